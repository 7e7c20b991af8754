// The pyg-sm viewer: a sortable list of slides, the chosen slide in deep
// zoom with the attention of a run as a second, aligned tiled image, and the
// attention of the patch under the pointer, a probabilistic model's
// uncertainty (attention_std) as a layer of its own colour scale, and the
// pathologists' outlines as the top layer where the slide has annotations.
// When everything the view needs is drawn, <body data-ready> holds
// "slide|run|overlay|opacity|uncertainty" (tests and scripts wait on it).
(function () {
  'use strict';

  var state = {slides: [], runs: [], slide: null, run: 0, overlay: true,
               opacity: 0.5, outlines: true, uncertainty: false,
               sortKey: 'id',
               sortAscending: true};
  var pendingKey = null;
  var busy = false;            // a slide or a layer is being opened
  var overlayItem = null;
  var outlineItem = null;      // the annotation outlines, when the slide has
  var uncertaintyItem = null;  // the run's attention_std, when it has one
  var el = function (id) { return document.getElementById(id); };
  var params = new URLSearchParams(window.location.search);

  var viewer = OpenSeadragon({
    id: 'viewer',
    prefixUrl: '/static/openseadragon/images/',
    drawer: 'canvas',            // fast and stable in headless browsers
    showNavigator: true,
    animationTime: params.get('animation') === '0' ? 0 : 0.6,
    maxZoomPixelRatio: 4,
    crossOriginPolicy: false
  });

  function viewKey() {
    return [state.slide, state.run, state.overlay ? 1 : 0,
            state.opacity, state.uncertainty ? 1 : 0].join('|');
  }

  function markPending() {
    document.body.dataset.ready = '';
    pendingKey = viewKey();
  }

  function checkReady() {
    if (pendingKey === null || busy) return;
    for (var i = 0; i < viewer.world.getItemCount(); i++) {
      var item = viewer.world.getItemAt(i);
      // OpenSeadragon loads no tiles for a hidden layer.
      if (item.getOpacity() > 0 && !item.getFullyLoaded()) return;
    }
    var vp = viewer.viewport;
    if (viewer.world.needsDraw() ||
        Math.abs(vp.getZoom(true) - vp.getZoom(false)) > 1e-9) return;
    document.body.dataset.ready = pendingKey;
    pendingKey = null;
  }
  viewer.addHandler('update-viewport', checkReady);
  window.setInterval(checkReady, 50);

  function encodeId(id) { return encodeURIComponent(id); }
  function overlayUrl(run, id) {
    return '/overlay/' + run + '/' + encodeId(id) + '.dzi';
  }
  function uncertaintyUrl(run, id) {
    return '/uncertainty/' + run + '/' + encodeId(id) + '.dzi';
  }
  function outlineUrl(id) {
    return '/annotations/' + encodeId(id) + '.dzi';
  }
  function slideInfo(id) {
    for (var i = 0; i < state.slides.length; i++) {
      if (state.slides[i].id === id) return state.slides[i];
    }
    return null;
  }
  function scoredBy(run, slide) {
    var p = slide.runs[run];
    return p !== null && p.scored;
  }

  function applyOverlay() {
    if (overlayItem) overlayItem.setOpacity(state.overlay ? state.opacity : 0);
  }

  function opened() { busy = false; markPending(); }

  // The outlines go on top of the attention, after it.
  function addOutlines() {
    var slide = slideInfo(state.slide);
    outlineItem = null;
    el('outlines-control').hidden = !slide.annotated;
    if (!slide.annotated) { opened(); return; }
    viewer.addTiledImage({
      tileSource: outlineUrl(state.slide),
      opacity: state.outlines ? 1 : 0,
      success: function (event) { outlineItem = event.item; opened(); },
      error: function () {
        el('note').textContent = 'the annotation layer failed to load';
        opened();
      }
    });
  }

  // The uncertainty goes over the attention, under the outlines.
  function addUncertainty() {
    var slide = slideInfo(state.slide);
    var shown = state.runs[state.run].uncertainty &&
      scoredBy(state.run, slide);
    uncertaintyItem = null;
    el('uncertainty-control').hidden = !shown;
    el('uncertainty-legend').hidden = !(shown && state.uncertainty);
    if (!shown) { addOutlines(); return; }
    viewer.addTiledImage({
      tileSource: uncertaintyUrl(state.run, state.slide),
      opacity: state.uncertainty ? 1 : 0,
      success: function (event) { uncertaintyItem = event.item; addOutlines(); },
      error: function () {
        el('note').textContent = 'the uncertainty layer failed to load';
        addOutlines();
      }
    });
  }

  function addOverlay() {
    var slide = slideInfo(state.slide);
    overlayItem = null;
    if (!scoredBy(state.run, slide)) {
      el('note').textContent = state.runs[state.run].name +
        ' did not score this slide';
      addUncertainty();
      return;
    }
    viewer.addTiledImage({
      tileSource: overlayUrl(state.run, state.slide),
      opacity: state.overlay ? state.opacity : 0,
      success: function (event) { overlayItem = event.item; addUncertainty(); },
      error: function () {
        el('note').textContent = 'the attention layer failed to load';
        addUncertainty();
      }
    });
  }

  function openSlide(id) {
    var slide = slideInfo(id);
    if (!slide) return;
    state.slide = id;
    markPending();
    el('note').textContent = slide.image ? '' :
      'no slide image: attention on a blank background of the patches';
    el('slide-title').textContent = id + (slide.label !== null ?
      ' (label ' + slide.label + ')' : '');
    var rows = el('slides-body').children;
    for (var i = 0; i < rows.length; i++) {
      rows[i].classList.toggle('selected', rows[i].dataset.id === id);
    }
    busy = true;
    viewer.world.removeAll();
    overlayItem = null;
    outlineItem = null;
    uncertaintyItem = null;
    if (slide.image) {
      viewer.addOnceHandler('open', addOverlay);
      viewer.addOnceHandler('open-failed', function () {
        el('note').textContent = 'the slide image failed to load';
        addOverlay();
      });
      viewer.open('/slide/' + encodeId(id) + '.dzi');
    } else {
      addOverlay();
    }
    remember();
  }

  function setRun(run) {
    state.run = run;
    el('run').value = String(run);
    if (overlayItem) viewer.world.removeItem(overlayItem);
    if (uncertaintyItem) viewer.world.removeItem(uncertaintyItem);
    if (outlineItem) viewer.world.removeItem(outlineItem);
    outlineItem = null;
    uncertaintyItem = null;
    busy = true;
    markPending();
    addOverlay();
    remember();
  }

  function setOverlay(on) {
    state.overlay = on;
    el('overlay').checked = on;
    markPending();
    applyOverlay();
    remember();
  }

  function setOutlines(on) {
    state.outlines = on;
    el('outlines').checked = on;
    markPending();
    if (outlineItem) outlineItem.setOpacity(on ? 1 : 0);
    remember();
  }

  function setUncertainty(on) {
    state.uncertainty = on;
    el('uncertainty').checked = on;
    el('uncertainty-legend').hidden = !(on && uncertaintyItem);
    markPending();
    if (uncertaintyItem) uncertaintyItem.setOpacity(on ? 1 : 0);
    remember();
  }

  function setOpacity(value) {
    state.opacity = value;
    el('opacity').value = String(Math.round(value * 100));
    markPending();
    applyOverlay();
  }

  function remember() {
    var query = new URLSearchParams(window.location.search);
    query.set('slide', state.slide);
    query.set('run', String(state.run));
    query.set('overlay', state.overlay ? '1' : '0');
    query.set('outlines', state.outlines ? '1' : '0');
    query.set('uncertainty', state.uncertainty ? '1' : '0');
    window.history.replaceState(null, '', '?' + query.toString());
  }

  // The slide list -------------------------------------------------------
  function positiveClass(p) {
    var names = Object.keys(p.probabilities || {});
    return names.length ? names[names.length - 1] : null;
  }
  function sortValue(slide, key) {
    if (key === 'id') return slide.id;
    if (key === 'label') return slide.label === null ? '' : String(slide.label);
    var p = slide.runs[Number(key.slice(4))];
    if (p && p.risk !== undefined && p.risk !== null) return p.risk;
    if (!p || p.probability === undefined || p.probability === null) return -1;
    var positive = positiveClass(p);
    return positive === null ? p.probability : p.probabilities[positive];
  }

  function renderTable() {
    var head = el('slides-head');
    head.innerHTML = '';
    var columns = [['id', 'slide'], ['label', 'label']];
    state.runs.forEach(function (run, i) {
      var example = null;
      state.slides.some(function (s) { example = s.runs[i]; return example; });
      var positive = example ? positiveClass(example) : null;
      var survival = example && example.risk !== undefined &&
        example.risk !== null;
      columns.push(['run:' + i, run.name + (survival ? ': risk' :
        ': p(' + positive + ')')]);
    });
    columns.forEach(function (column) {
      var th = document.createElement('th');
      th.textContent = column[1];
      th.dataset.key = column[0];
      if (column[0] === state.sortKey) {
        th.className = state.sortAscending ? 'sorted-asc' : 'sorted-desc';
      }
      th.addEventListener('click', function () { sortBy(column[0]); });
      head.appendChild(th);
    });
    var ordered = state.slides.slice().sort(function (a, b) {
      var x = sortValue(a, state.sortKey), y = sortValue(b, state.sortKey);
      var order = x < y ? -1 : x > y ? 1 : (a.id < b.id ? -1 : 1);
      return state.sortAscending ? order : -order;
    });
    var body = el('slides-body');
    body.innerHTML = '';
    ordered.forEach(function (slide) {
      var tr = document.createElement('tr');
      tr.dataset.id = slide.id;
      if (slide.id === state.slide) tr.className = 'selected';
      var cells = [slide.id, slide.label === null ? '' : slide.label];
      slide.runs.forEach(function (p) {
        var positive = p ? positiveClass(p) : null;
        if (p && p.risk !== undefined && p.risk !== null) {
          cells.push(p.risk.toFixed(3));
          return;
        }
        cells.push(!p || positive === null ? '' :
          p.probabilities[positive].toFixed(3) + ' \u2192 ' + p.predicted);
      });
      cells.forEach(function (text) {
        var td = document.createElement('td');
        td.textContent = text;
        tr.appendChild(td);
      });
      tr.addEventListener('click', function () { openSlide(slide.id); });
      body.appendChild(tr);
    });
  }

  function sortBy(key) {
    if (state.sortKey === key) state.sortAscending = !state.sortAscending;
    else { state.sortKey = key; state.sortAscending = key.indexOf('run:') !== 0; }
    renderTable();
  }

  // The patch under the pointer ------------------------------------------
  var asking = false, nextPoint = null;
  function ask(point) {
    if (asking) { nextPoint = point; return; }
    asking = true;
    var slide = state.slide, run = state.run;
    fetch('/api/patch/' + run + '/' + encodeId(slide) + '?x=' + point.x +
          '&y=' + point.y)
      .then(function (r) { return r.ok ? r.json() : {patch: null}; })
      .then(function (answer) {
        var out = el('readout');
        var p = answer.patch;
        out.dataset.patch = p ? String(p.index) : '';
        out.textContent = p ? 'patch ' + p.index + ' at (' + p.x + ', ' + p.y +
          '): attention ' + p.attention.toPrecision(3) + ', percentile ' +
          p.percentile.toFixed(1) + (p.attention_std === undefined ? '' :
          ', std ' + p.attention_std.toPrecision(3)) : 'no patch here';
      })
      .catch(function () {})
      .then(function () {
        asking = false;
        if (nextPoint) { var p = nextPoint; nextPoint = null; ask(p); }
      });
  }
  new OpenSeadragon.MouseTracker({
    element: viewer.element,
    moveHandler: function (event) {
      var item = viewer.world.getItemAt(0);
      if (!item || !state.slide || !scoredBy(state.run, slideInfo(state.slide))) return;
      var point = item.viewerElementToImageCoordinates(event.position);
      ask({x: Math.floor(point.x), y: Math.floor(point.y)});
    }
  });

  // Start --------------------------------------------------------------------
  el('overlay').addEventListener('change', function (e) { setOverlay(e.target.checked); });
  el('outlines').addEventListener('change', function (e) { setOutlines(e.target.checked); });
  el('uncertainty').addEventListener('change', function (e) { setUncertainty(e.target.checked); });
  el('opacity').addEventListener('input', function (e) { setOpacity(Number(e.target.value) / 100); });
  el('run').addEventListener('change', function (e) { setRun(Number(e.target.value)); });

  fetch('/api/slides').then(function (r) { return r.json(); }).then(function (data) {
    state.slides = data.slides;
    state.runs = data.runs;
    el('summary').textContent = data.slides.length + ' slides, ' +
      data.runs.length + ' run' + (data.runs.length > 1 ? 's' : '') +
      '; click a column to sort';
    data.runs.forEach(function (run) {
      var option = document.createElement('option');
      option.value = String(run.index);
      option.textContent = run.name;
      el('run').appendChild(option);
    });
    el('legend-bar').style.background = 'linear-gradient(to right, ' +
      data.legend.colors.join(', ') + ')';
    el('legend-text').textContent = '0 \u2013 100: ' + data.legend.label;
    el('uncertainty-legend-bar').style.background = 'linear-gradient(to right, ' +
      data.uncertainty_legend.colors.join(', ') + ')';
    el('uncertainty-legend-text').textContent = data.uncertainty_legend.label;
    var run = Number(params.get('run') || 0);
    state.run = run >= 0 && run < data.runs.length ? run : 0;
    el('run').value = String(state.run);
    state.overlay = params.get('overlay') !== '0';
    el('overlay').checked = state.overlay;
    state.outlines = params.get('outlines') !== '0';
    el('outlines').checked = state.outlines;
    state.uncertainty = params.get('uncertainty') === '1';
    el('uncertainty').checked = state.uncertainty;
    renderTable();
    var first = params.get('slide');
    if (!slideInfo(first) && data.slides.length) first = data.slides[0].id;
    if (first) openSlide(first);
  });

  function imageToPage(x, y) {
    var item = viewer.world.getItemAt(0);
    var point = item.imageToViewerElementCoordinates(new OpenSeadragon.Point(x, y));
    var box = viewer.element.getBoundingClientRect();
    return {x: box.left + point.x, y: box.top + point.y};
  }

  window.pygSm = {state: state, viewer: viewer, openSlide: openSlide,
                  setRun: setRun, setOverlay: setOverlay,
                  setOutlines: setOutlines, setUncertainty: setUncertainty,
                  setOpacity: setOpacity, sortBy: sortBy,
                  imageToPage: imageToPage};
})();
