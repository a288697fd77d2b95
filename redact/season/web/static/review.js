/* redact review page: the viewer, the candidate list and the decision buttons.
 * Reads the JSON block #redact-data written by redact/season/web/pages.py. Live pages POST
 * decisions to the server (token from <meta name="redact-token">); a static export keeps them
 * in localStorage and offers them as CSV for `redact review decide --csv FILE`.
 * Geometry (same as redact/season/web/model.py): yaw = (cx / W - 0.5) * 360,
 * pitch = (0.5 - cy / H) * 180, degrees. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("redact-data").textContent);
  var tokenMeta = document.querySelector('meta[name="redact-token"]');
  var token = tokenMeta ? tokenMeta.getAttribute("content") : "";
  var status = document.getElementById("status");
  var list = document.getElementById("candidates");
  var storeKey = "redact-decisions:" + data.image_id;
  var viewer = null;
  var addMode = false;

  function say(text, bad) {
    status.textContent = text;
    status.className = bad ? "bad" : "good";
  }

  function localDecisions() {
    try {
      return JSON.parse(window.localStorage.getItem(storeKey) || "{}");
    } catch (e) {
      say("stored decisions unreadable: " + e, true);
      return {};
    }
  }

  data.candidates.forEach(function (c, i) { c.index = i; });
  if (!data.live) {
    var stored = localDecisions();
    data.candidates.forEach(function (c) {
      if (c.review_id && stored[c.review_id]) c.review_decision = stored[c.review_id];
    });
  }

  function label(c) {
    var text = c.cls + " " + c.score.toFixed(2) + " \u00b7 " + c.decision;
    text += c.reason ? " (" + c.reason + ")" : "";
    if (c.review_id) text += " \u00b7 " + (c.review_decision ? "reviewed: " + c.review_decision : "pending");
    return text;
  }

  function post(path, body) {
    return fetch(data.api + path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Redact-Token": token },
      body: JSON.stringify(body),
      credentials: "same-origin",
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) throw new Error(j.error || r.statusText);
        return j;
      });
    });
  }

  function decide(c, decision) {
    if (!data.live) {
      var stored = localDecisions();
      stored[c.review_id] = decision;
      window.localStorage.setItem(storeKey, JSON.stringify(stored));
      c.review_decision = decision;
      render();
      say("kept in this browser: " + decision + " (download the CSV to record it)");
      return;
    }
    say("recording " + decision + "...");
    post("decide", { review_id: c.review_id, decision: decision })
      .then(function (j) {
        c.review_decision = decision;
        render();
        say(j.summary);
      })
      .catch(function (e) { say("not recorded: " + e.message, true); });
  }

  function renderList() {
    list.textContent = "";
    data.candidates.forEach(function (c, i) {
      var li = document.createElement("li");
      li.className = "cand redact-" + c.decision + (c.review_decision ? " decided" : "");
      li.id = "cand-" + i;
      li.setAttribute("data-review-id", c.review_id);
      var span = document.createElement("span");
      span.className = "label";
      span.textContent = label(c);
      li.appendChild(span);
      if (c.pitch !== null && viewer) {
        var look = document.createElement("button");
        look.type = "button";
        look.textContent = "look";
        look.addEventListener("click", function () {
          select(i);
          viewer.lookAt(c.pitch, c.yaw, Math.min(100, Math.max(10, 4 * c.dyaw)), 500);
        });
        li.appendChild(look);
      }
      if (c.review_id) {
        data.buttons.forEach(function (b) {
          var btn = document.createElement("button");
          btn.type = "button";
          btn.className = "decide decide-" + b[0];
          btn.setAttribute("data-decision", b[0]);
          btn.textContent = b[1];
          if (c.review_decision === b[0]) btn.className += " chosen";
          btn.addEventListener("click", function () { decide(c, b[0]); });
          li.appendChild(btn);
        });
      }
      list.appendChild(li);
    });
  }

  function hotspotBox(div, c) {
    // Size the marker to the box's angular size at the initial field of view; pannellum's
    // `scale` keeps it in proportion when zooming.
    var el = document.getElementById("viewer");
    var hfov = (data.viewer.hfov || 100) * Math.PI / 180;
    var pxPerTan = el.clientWidth / 2 / Math.tan(hfov / 2);
    var w = 2 * Math.tan(Math.min(c.dyaw * Math.cos(c.pitch * Math.PI / 180), 120) * Math.PI / 360) * pxPerTan;
    var h = 2 * Math.tan(Math.min(c.dpitch, 120) * Math.PI / 360) * pxPerTan;
    div.style.width = Math.max(w, 8) + "px";
    div.style.height = Math.max(h, 8) + "px";
    var num = document.createElement("span");
    num.className = "hs-num";
    num.textContent = String(c.index + 1);
    div.appendChild(num);
    var tag = document.createElement("span");
    tag.className = "hs-label";
    tag.textContent = label(c);
    div.appendChild(tag);
    div.title = (c.index + 1) + ". " + label(c);
  }

  function select(i) {
    document.querySelectorAll(".redact-hs.selected, .cand.selected").forEach(function (el) {
      el.classList.remove("selected");
    });
    var hs = document.querySelector(".redact-hs-" + i);
    if (hs) hs.classList.add("selected");
    var li = document.getElementById("cand-" + i);
    if (li) li.classList.add("selected");
  }
  window.redactSelect = select;

  function renderHotspotDecisions() {
    data.candidates.forEach(function (c, i) {
      var hs = document.querySelector(".redact-hs-" + i + " .hs-label");
      if (hs) hs.textContent = label(c);
    });
  }

  function startPanorama() {
    var cfg = Object.assign({}, data.viewer);
    delete cfg.redactNote;
    if (!data.live && window.location.protocol === "file:" && window.REDACT_PANO_DATA) {
      // Browsers refuse file:// textures in WebGL: the export embeds the panorama.
      cfg.type = "equirectangular";
      cfg.panorama = window.REDACT_PANO_DATA;
      delete cfg.multiRes;
    }
    cfg.hotSpots = data.candidates
      .map(function (c, i) {
        return {
          pitch: c.pitch, yaw: c.yaw, id: "cand-" + i, scale: true,
          cssClass: "redact-hs redact-hs-" + i + " redact-" + c.decision,
          createTooltipFunc: hotspotBox, createTooltipArgs: c,
        };
      })
      .filter(function (h) { return h.pitch !== null; });
    viewer = window.pannellum.viewer("viewer", cfg);
    window.redactViewer = viewer;
    function loaded() { document.body.setAttribute("data-viewer", "loaded"); }
    viewer.on("load", loaded);
    if (viewer.isLoaded()) loaded();  // multires may finish inside the constructor
    viewer.on("error", function (e) { say("viewer: " + e, true); document.body.setAttribute("data-viewer", "error"); });
    if (data.viewer.redactNote) say(data.viewer.redactNote, true);
    var down = null;
    viewer.on("mousedown", function (ev) { down = [ev.clientX, ev.clientY]; });
    viewer.on("mouseup", function (ev) {
      if (!addMode || !down || Math.abs(ev.clientX - down[0]) + Math.abs(ev.clientY - down[1]) > 4) return;
      var py = viewer.mouseEventToCoords(ev);
      var x = (((py[1] + 180) % 360 + 360) % 360 - 180) / 360 + 0.5;
      addRegion(x * data.width, (0.5 - py[0] / 180) * data.height);
    });
  }

  function startPhoto() {
    var el = document.getElementById("viewer");
    el.className = "photo";
    var img = document.createElement("img");
    img.alt = data.relative_path;
    img.src = data.photo;
    var svgNS = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("class", "overlay");
    el.appendChild(img);
    el.appendChild(svg);
    img.addEventListener("load", function () {
      svg.setAttribute("viewBox", "0 0 " + img.naturalWidth + " " + img.naturalHeight);
      data.candidates.forEach(function (c, i) {
        var r = document.createElementNS(svgNS, "rect");
        r.setAttribute("x", c.box[0]); r.setAttribute("y", c.box[1]);
        r.setAttribute("width", c.box[2] - c.box[0]); r.setAttribute("height", c.box[3] - c.box[1]);
        r.setAttribute("class", "box redact-" + c.decision);
        r.setAttribute("id", "box-" + i);
        var t = document.createElementNS(svgNS, "title");
        t.textContent = label(c);
        r.appendChild(t);
        svg.appendChild(r);
      });
      document.body.setAttribute("data-viewer", "loaded");
    });
    svg.addEventListener("click", function (ev) {
      if (!addMode) return;
      var rect = svg.getBoundingClientRect();
      addRegion((ev.clientX - rect.left) / rect.width * img.naturalWidth,
                (ev.clientY - rect.top) / rect.height * img.naturalHeight);
    });
  }

  function addRegion(cx, cy) {
    addMode = false;
    var half = Math.max(8, Math.round(data.width / 400));
    // Inside the image (a panorama's box may run past the seam: x2 <= x1 + W is fine).
    var x2 = data.viewer ? cx + half : Math.min(data.width, cx + half);
    var box = [Math.max(0, cx - half), Math.max(0, cy - half), x2, Math.min(data.height, cy + half)];
    var note = window.prompt("Why is this a missed face/plate? (class: face or license_plate after a comma)", "missed face") || "";
    if (!note) { say("no region added"); return; }
    var parts = note.split(",");
    var cls = parts.length > 1 ? parts[parts.length - 1].trim() : "face";
    post("region", { image_id: data.image_id, box: box, "class": cls, reason: parts[0].trim() })
      .then(function (j) { say(j.summary); })
      .catch(function (e) { say("not recorded: " + e.message, true); });
  }

  function render() {
    renderList();
    renderHotspotDecisions();
  }

  function downloadCsv() {
    var stored = localDecisions();
    var lines = ["review_id,decision"];
    Object.keys(stored).sort().forEach(function (rid) { lines.push(rid + "," + stored[rid]); });
    var a = document.createElement("a");
    a.href = "data:text/csv;charset=utf-8," + encodeURIComponent(lines.join("\n") + "\n");
    a.download = "decisions-" + data.image_id + ".csv";
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  var addBtn = document.getElementById("add-missed");
  if (data.live && (data.viewer || data.photo)) {
    addBtn.addEventListener("click", function () { addMode = true; say("click the missed face or plate"); });
  } else {
    addBtn.hidden = true;
  }
  var dl = document.getElementById("download-csv");
  if (dl) dl.addEventListener("click", downloadCsv);

  if (data.viewer) startPanorama();
  else if (data.photo) startPhoto();
  else say("no published copy to show (status: not published)", true);
  renderList();
})();
