// Loaded after require.js and before the Jupyter widget manager (embed-amd.js): the manager
// finds its fonts and chunks relative to the AMD module path "@jupyter-widgets/html-manager/dist",
// which require.js would resolve against each page's own folder. Point it at the copy served
// from this folder (/vendor/html-manager), so widget pages load nothing from elsewhere.
(function () {
  var src = document.currentScript.src;
  var base = src.slice(0, src.lastIndexOf("/") + 1);
  require.config({ paths: { "@jupyter-widgets/html-manager/dist": base + "html-manager" } });
})();
