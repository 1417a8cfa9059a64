// The coordinator's dashboard: reads /status.json every 2 s and draws the page. Every value from
// the coordinator enters the page as text (textContent, SVG attributes), never as markup, so a
// site name or a message cannot inject anything; the Content-Security-Policy allows no inline
// script either.
'use strict';

(function () {
  const kRefreshMs = 2000;
  const kSvg = 'http://www.w3.org/2000/svg';

  function $(id) { return document.getElementById(id); }

  function setText(id, value) {
    const node = $(id);
    if (node) node.textContent = value === undefined || value === null ? '\u2013' : String(value);
  }

  function cell(row, value, className) {
    const td = document.createElement('td');
    td.textContent = value === undefined || value === null || value === '' ? '\u2013' : String(value);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function fillBody(table, rows, columns, empty) {
    const body = $(table).tBodies[0];
    const fresh = document.createElement('tbody');
    if (rows.length === 0) {
      const tr = fresh.insertRow();
      const td = cell(tr, empty, 'empty');
      td.colSpan = columns;
    }
    for (const build of rows) build(fresh.insertRow());
    body.replaceWith(fresh);
  }

  function addFact(dl, term, value) {
    if (value === undefined || value === null || value === '') return;
    const dt = document.createElement('dt');
    dt.textContent = term;
    const dd = document.createElement('dd');
    dd.textContent = Array.isArray(value) ? value.join(', ') : String(value);
    dl.appendChild(dt);
    dl.appendChild(dd);
  }

  function fillFacts(id, facts) {
    const dl = document.createElement('dl');
    dl.id = id;
    for (const [term, value] of facts) addFact(dl, term, value);
    $(id).replaceWith(dl);
  }

  function plural(n, one, many) { return `${n} ${n === 1 ? one : many}`; }

  // "2026-12-05T15:35:00Z" as "2026-12-05 15:35:00 UTC".
  function when(iso) {
    return typeof iso === 'string' ? iso.replace('T', ' ').replace(/Z$/, ' UTC') : iso;
  }

  function ago(seconds) {
    if (seconds === undefined || seconds === null || seconds < 0) return 'never';
    if (seconds < 2) return 'just now';
    if (seconds < 120) return Math.round(seconds) + ' s ago';
    if (seconds < 7200) return Math.round(seconds / 60) + ' min ago';
    return Math.round(seconds / 3600) + ' h ago';
  }

  function bytes(n) {
    if (typeof n !== 'number') return '';
    if (n < 1024) return n + ' B';
    if (n < 1048576) return (n / 1024).toFixed(1) + ' KiB';
    if (n < 1073741824) return (n / 1048576).toFixed(1) + ' MiB';
    return (n / 1073741824).toFixed(2) + ' GiB';
  }

  function number(x, digits) {
    return typeof x === 'number' && isFinite(x) ? x.toFixed(digits) : '\u2013';
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(kSvg, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  // A round tick step for `range` split in about `count` parts: 1, 2, 2.5 or 5 times a power of 10.
  function niceStep(range, count) {
    const raw = range / count;
    const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
    const n = raw / magnitude;
    return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 2.5 ? 2.5 : n <= 5 ? 5 : 10) * magnitude;
  }

  // The fewest decimals that write `step` exactly.
  function decimals(step) {
    for (let d = 0; d < 8; ++d) {
      if (Math.abs(Number(step.toFixed(d)) - step) < step * 1e-6) return d;
    }
    return 8;
  }

  // A line chart of `points` ([{x: round, y: value}]) into the <svg> `id`, with its point count in
  // data-points.
  function drawChart(id, title, points, fixedRange) {
    const old = $(id);
    const W = 480, H = 240, left = 52, right = 16, top = 30, bottom = 36;
    const chart = svg('svg', {
      id: id, class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img',
      'aria-label': old.getAttribute('aria-label'), 'data-points': points.length,
    });
    chart.appendChild(svg('text', {class: 'chart-title', x: left, y: 18}, title));
    const plotW = W - left - right, plotH = H - top - bottom;
    if (points.length === 0) {
      chart.appendChild(svg('text', {class: 'empty-note', x: left + 8, y: top + plotH / 2},
                            'no round has finished yet'));
    } else {
      const xs = points.map((p) => p.x), ys = points.map((p) => p.y);
      let xMin = Math.min(...xs), xMax = Math.max(...xs);
      if (xMin === xMax) { xMin -= 1; xMax += 1; }
      let yMin = fixedRange ? fixedRange[0] : Math.min(...ys);
      let yMax = fixedRange ? fixedRange[1] : Math.max(...ys);
      if (yMin === yMax) { yMin -= 0.5; yMax += 0.5; }
      const step = niceStep(yMax - yMin, 4);
      if (!fixedRange) {
        yMin = Math.floor(yMin / step) * step;
        yMax = Math.ceil(yMax / step) * step;
      }
      const px = (x) => left + (x - xMin) / (xMax - xMin) * plotW;
      const py = (y) => top + plotH - (y - yMin) / (yMax - yMin) * plotH;
      const ticks = Math.round((yMax - yMin) / step);
      for (let i = 0; i <= ticks; ++i) {
        const v = yMin + step * i;
        chart.appendChild(svg('line', {class: 'grid', x1: left, x2: left + plotW, y1: py(v), y2: py(v)}));
        chart.appendChild(svg('text', {class: 'tick', x: left - 6, y: py(v) + 4, 'text-anchor': 'end'},
                              v.toFixed(decimals(step))));
      }
      const rounds = [...new Set(xs)];
      const every = Math.max(1, Math.ceil(rounds.length / 10));
      rounds.forEach((r, i) => {
        if (i % every !== 0 && i !== rounds.length - 1) return;
        chart.appendChild(svg('text', {class: 'tick', x: px(r), y: top + plotH + 16, 'text-anchor': 'middle'}, r));
      });
      chart.appendChild(svg('text', {class: 'tick', x: left + plotW / 2, y: H - 4, 'text-anchor': 'middle'}, 'round'));
      chart.appendChild(svg('line', {class: 'axis', x1: left, x2: left, y1: top, y2: top + plotH}));
      chart.appendChild(svg('line', {class: 'axis', x1: left, x2: left + plotW, y1: top + plotH, y2: top + plotH}));
      chart.appendChild(svg('polyline', {class: 'line', points: points.map((p) => `${px(p.x)},${py(p.y)}`).join(' ')}));
      for (const p of points) {
        const dot = svg('circle', {class: 'point', cx: px(p.x), cy: py(p.y), r: 3.5});
        dot.appendChild(svg('title', {}, `round ${p.x}: ${p.y.toFixed(4)}`));
        chart.appendChild(dot);
      }
    }
    old.replaceWith(chart);
  }

  function series(history, key) {
    const out = [];
    for (const h of history || []) {
      if (typeof h[key] === 'number' && isFinite(h[key])) out.push({x: h.round, y: h[key]});
    }
    return out;
  }

  function renderHeader(s) {
    const f = s.federation || {};
    setText('federation-name', f.name);
    document.title = `Hansa: ${f.name || 'coordinator'}`;
    setText('updated', s.generated_at ? `As of ${when(s.generated_at)}.` : '');
    const ca = f.ca || {};
    const coordinator = f.coordinator || {};
    fillFacts('federation-facts', [
      ['Federation', f.name],
      ['Started', when(f.started_at)],
      ['Coordinator', coordinator.name],
      ['Sites connect to', coordinator.listen],
      ['Coordinator certificate valid until', when(coordinator.certificate_not_after)],
      ['Certificate authority', ca.subject],
      ['CA certificate SHA-256', ca.fingerprint],
      ['CA certificate valid until', when(ca.not_after)],
      ['Sites connected now', typeof s.connected === 'number' ?
          `${s.connected} of ${(s.sites || []).length}` : undefined],
    ]);
  }

  function renderRound(s) {
    const r = s.round || {};
    setText('round-number', r.number ? `Round ${r.number}` : 'No round yet');
    setText('round-of', r.total ? `of ${r.total}` : '');
    setText('round-stage', r.stage);
    const parts = [];
    const cohort = (s.sites || []).filter((site) => site.in_cohort).length;
    if (cohort > 0) parts.push(`${plural(cohort, 'site', 'sites')} in the cohort`);
    if (typeof r.completed === 'number') parts.push(`${plural(r.completed, 'round', 'rounds')} completed`);
    if (typeof r.stage_seconds === 'number') parts.push(`${Math.round(r.stage_seconds)} s in this stage`);
    if (typeof r.uploads_in_flight === 'number' && r.uploads_in_flight > 0) {
      parts.push(`${plural(r.uploads_in_flight, 'upload', 'uploads')} in flight`);
    }
    setText('round-detail', parts.join(', '));
  }

  function renderPrivacy(s) {
    const all = Array.isArray(s.privacy) ? s.privacy : [];
    const bar = $('privacy-bar');
    const p = all[0];
    if (!p) {
      setText('privacy-spent', 'Off');
      setText('privacy-detail', 'no differential privacy in this study');
      bar.hidden = true;
      return;
    }
    const spent = typeof p.epsilon_spent === 'number' ? p.epsilon_spent : 0;
    if (typeof p.epsilon_budget === 'number' && p.epsilon_budget > 0) {
      setText('privacy-spent', `\u03b5 ${number(spent, 3)} of ${number(p.epsilon_budget, 3)}`);
      bar.max = p.epsilon_budget;
      bar.value = Math.min(spent, p.epsilon_budget);
      bar.hidden = false;
    } else {
      setText('privacy-spent', `\u03b5 ${number(spent, 3)}`);
      bar.hidden = true;
    }
    const detail = all.map((g) => {
      const delta = typeof g.delta === 'number' && g.delta > 0 ? `, \u03b4 = ${g.delta}` : '';
      return `${String(g.guarantee).replace('_', '-')}: \u03b5 ${number(g.epsilon_spent, 3)} of ` +
          `${number(g.epsilon_budget, 3)}${delta}`;
    });
    setText('privacy-detail', detail.join('; '));
  }

  function renderAudit(s) {
    const a = s.audit || {};
    setText('audit-head', a.head_hash || '\u2013');
    setText('audit-detail', typeof a.records === 'number' ? `${a.records} records in audit.jsonl` : '');
  }

  function renderUpload(td, site) {
    td.textContent = '';
    const u = site.upload || {};
    if (!site.in_cohort) {
      td.textContent = 'not in this round';
      return;
    }
    const received = typeof u.received_bytes === 'number' ? u.received_bytes : 0;
    if (typeof u.expected_bytes === 'number' && u.expected_bytes > 0) {
      const bar = document.createElement('progress');
      bar.max = u.expected_bytes;
      bar.value = Math.min(received, u.expected_bytes);
      td.appendChild(bar);
      td.appendChild(document.createTextNode(u.complete ? `complete (${bytes(received)})` :
          `${Math.round(100 * bar.value / bar.max)} % (${bytes(received)})`));
    } else {
      td.textContent = received > 0 ? `${bytes(received)} so far` : 'waiting';
    }
  }

  function renderSites(s) {
    const sites = s.sites || [];
    fillBody('sites', sites.map((site) => (tr) => {
      tr.dataset.site = site.name;
      cell(tr, site.name);
      cell(tr, site.country);
      cell(tr, site.organization);
      cell(tr, site.state, site.state ? `state-${String(site.state).replace(/[^a-z_-]/g, '')}` : '');
      cell(tr, ago(site.last_seen_seconds_ago));
      renderUpload(cell(tr, ''), site);
    }), 6, 'no site has connected yet');
  }

  function renderEvents(s) {
    const events = Array.isArray(s.events) ? s.events : [];
    setText('events-total', `${plural(s.dropouts || 0, 'dropout', 'dropouts')} and ` +
        `${plural(s.refusals || 0, 'refused plan', 'refused plans')} since the coordinator started` +
        (events.length > 0 ? '; the newest first:' : '.'));
    fillBody('events', events.map((e) => (tr) => {
      const refused = e.kind === 'refused';
      cell(tr, e.round);
      cell(tr, e.site);
      cell(tr, refused ? 'refused the plan' : 'dropped out', refused ? 'state-refused' : 'state-dropped');
      cell(tr, e.stage);
      cell(tr, refused ? e.reason : 'did not answer in time');
    }), 5, 'no site has dropped out or refused a plan');
  }

  function renderGdpr(s) {
    const g = s.study;
    const section = $('gdpr-section');
    if (!g || typeof g !== 'object' || Object.keys(g).length === 0) {
      section.hidden = true;
      return;
    }
    section.hidden = false;
    fillFacts('gdpr-facts', [
      ['Study', g.id],
      ['Purpose', g.purpose],
      ['Legal basis', g.legal_basis],
      ['Controllers', g.controllers],
      ['Retention', typeof g.retention_days === 'number' ? `${g.retention_days} days` : g.retention_days],
      ['DPIA reference', g.dpia_reference],
    ]);
  }

  function render(s) {
    renderHeader(s);
    renderRound(s);
    renderPrivacy(s);
    renderAudit(s);
    renderSites(s);
    renderEvents(s);
    renderGdpr(s);
    drawChart('chart-accuracy', 'Accuracy', series(s.history, 'accuracy'), [0, 1]);
    drawChart('chart-loss', 'Loss', series(s.history, 'loss'), null);
    document.body.dataset.state = 'live';
    document.body.dataset.round = (s.round && s.round.number) || 0;
  }

  let pending = false;
  async function refresh() {
    if (pending) return;
    pending = true;
    const banner = $('connection');
    try {
      const response = await fetch('/status.json', {cache: 'no-store', credentials: 'same-origin'});
      if (!response.ok) throw new Error(`the coordinator answered ${response.status}`);
      render(await response.json());
      banner.hidden = true;
    } catch (e) {
      banner.textContent = `Not updated: ${e.message}. Retrying every ${kRefreshMs / 1000} s.`;
      banner.hidden = false;
      document.body.dataset.state = 'stale';
    } finally {
      pending = false;
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    refresh();
    setInterval(refresh, kRefreshMs);
  });
})();
