// The static form of a dlcv.interactive figure on the book's site: its controls swap
// precomputed frames. `root` is the figure's <div class="dlcv-interactive">, which holds the
// controls (each with data-dlcv-param), the frame <img> and the frames as JSON
// ({"i,j": "data:image/png;base64,..."}). Each change shows the frame of the controls'
// positions, says the shown value in the slider's <output> and aria-valuetext, and updates the
// frame's alt text (the figure's data-alt followed by "name = value, ...").
(function (root) {
  var img = root.querySelector('img');
  var frames = JSON.parse(root.querySelector('script[type="application/json"]').textContent);
  var controls = root.querySelectorAll('[data-dlcv-param]');
  function update() {
    var key = [], said = [];
    controls.forEach(function (e) {
      key.push(e.value);
      var value = e.dataset.values ? JSON.parse(e.dataset.values)[+e.value]
                                   : e.options[e.selectedIndex].text;
      var out = root.querySelector('[data-dlcv-out="' + e.dataset.dlcvParam + '"]');
      if (out) { out.textContent = value; }
      if (e.type === 'range') { e.setAttribute('aria-valuetext', value); }
      said.push(e.dataset.name + ' = ' + value);
    });
    img.src = frames[key.join(',')];
    img.alt = root.dataset.alt + ' (' + said.join(', ') + ')';
  }
  controls.forEach(function (e) {
    e.addEventListener('input', update);
    e.addEventListener('change', update);
  });
})
