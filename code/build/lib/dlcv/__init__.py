"""dlcv: the companion package of the open textbook *Deep Learning for Computer Vision*."""
__version__ = "0.1.0"
