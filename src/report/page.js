// Sorting, chart hover and a render mark; no network, no libraries.
(function () {
  try {
    document.querySelectorAll("table.sortable").forEach(function (t) {
      t.querySelectorAll("th").forEach(function (th, col) {
        th.addEventListener("click", function () {
          var body = t.tBodies[0];
          var rows = Array.prototype.slice.call(body.rows);
          var asc = th.dataset.dir !== "asc";
          th.dataset.dir = asc ? "asc" : "desc";
          var key = function (r) {
            var c = r.cells[col];
            var v = c.dataset.v;
            return v !== undefined && v !== "" ? parseFloat(v) : c.textContent;
          };
          rows.sort(function (a, b) {
            var x = key(a), y = key(b);
            var r = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
            return asc ? r : -r;
          });
          rows.forEach(function (r) { body.appendChild(r); });
        });
      });
    });
    var tip = document.getElementById("tip");
    document.querySelectorAll("svg.chart").forEach(function (svg) {
      var d = svg.dataset, n = function (k) { return parseFloat(d[k]); };
      var series = Array.prototype.map.call(svg.querySelectorAll("g.series"), function (g) {
        var pl = g.querySelector("polyline");
        var pts = pl ? pl.getAttribute("points").split(" ").map(function (p) { return p.split(",").map(parseFloat); }) : [];
        return { owner: g.dataset.owner, name: g.dataset.name, pts: pts };
      });
      svg.addEventListener("mousemove", function (ev) {
        var box = svg.getBoundingClientRect(), vb = svg.viewBox.baseVal;
        var px = (ev.clientX - box.left) * vb.width / box.width;
        var x = n("x0") + (px - n("left")) / n("pw") * (n("x1") - n("x0"));
        var lines = [svg.id === "chart-roc" ? "FPR " + x.toFixed(3) : "epoch " + Math.round(x)];
        series.forEach(function (s) {
          if (!s.pts.length) return;
          var best = s.pts.reduce(function (a, p) { return Math.abs(p[0] - px) < Math.abs(a[0] - px) ? p : a; });
          var y = n("y0") + (n("top") + n("ph") - best[1]) / n("ph") * (n("y1") - n("y0"));
          lines.push(s.owner + " " + s.name + ": " + y.toFixed(4));
        });
        tip.textContent = lines.slice(0, 25).join("\n");
        tip.style.left = ev.clientX + 12 + "px";
        tip.style.top = ev.clientY + 12 + "px";
        tip.hidden = false;
      });
      svg.addEventListener("mouseleave", function () { tip.hidden = true; });
    });
    document.body.dataset.renderMs = performance.now().toFixed(1);
    document.body.dataset.ok = "1";
  } catch (e) {
    document.body.dataset.error = String(e);
  }
})();
