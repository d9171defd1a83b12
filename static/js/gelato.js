// Drag a thumbnail from a gallery (the bank images) onto a prompt slot.
// Browsers hand over only the image URL on such a drag, and Gradio's image box accepts only files, so the
// URL is fetched here and handed to the slot's file input as if the file had been chosen.
(function () {
  const URL_TYPE = "text/x-gelato-url";

  function slotOf(element) {
    return element && element.closest ? element.closest(".gelato-slot") : null;
  }

  function waitFor(find, timeoutMs) {
    return new Promise((resolve, reject) => {
      const start = Date.now();
      (function poll() {
        const found = find();
        if (found) return resolve(found);
        if (Date.now() - start > timeoutMs) return reject(new Error("slot input did not appear"));
        setTimeout(poll, 50);
      })();
    });
  }

  async function placeUrl(slot, url) {
    const response = await fetch(url);
    if (!response.ok) throw new Error("could not fetch " + url + ": " + response.status);
    const blob = await response.blob();
    const file = new File([blob], "bank-image.png", { type: blob.type || "image/png" });
    if (!slot.querySelector("input[type=file]")) {
      // The slot shows an image: clear it first so the upload input comes back.
      const clear = slot.querySelector("button[aria-label='Clear'], button[title='Clear']");
      if (clear) clear.click();
    }
    const input = await waitFor(() => slot.querySelector("input[type=file]"), 3000);
    const transfer = new DataTransfer();
    transfer.items.add(file);
    input.files = transfer.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  }

  document.addEventListener("dragstart", (event) => {
    const image = event.target && event.target.closest ? event.target.closest("#bank-images img") : null;
    if (image) event.dataTransfer.setData(URL_TYPE, image.currentSrc || image.src);
  }, true);

  document.addEventListener("dragover", (event) => {
    if (slotOf(event.target)) event.preventDefault();
  }, true);

  document.addEventListener("drop", (event) => {
    const slot = slotOf(event.target);
    if (!slot || !event.dataTransfer) return;
    if (event.dataTransfer.files && event.dataTransfer.files.length) return; // a real file: Gradio handles it
    const url = event.dataTransfer.getData(URL_TYPE) || event.dataTransfer.getData("text/uri-list");
    if (!url) return;
    event.preventDefault();
    event.stopPropagation();
    placeUrl(slot, url.split("\n")[0].trim()).catch((error) => console.error("gelato drop:", error));
  }, true);

  window.gelatoPlaceUrl = (slotId, url) => placeUrl(document.getElementById(slotId), url);
})();

// The ARC answer-grid editor (app/pages/arc.py): built from a `.gelato-arc` element carrying the test input.
// Set the size (or copy the input), pick a colour, paint cells (click or drag) or flood-fill a region.
// window.gelatoArcGrid() hands the grid to the "Check" button as JSON; the server checks it.
(function () {
  const PALETTE = ["#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00",
                   "#AAAAAA", "#F012BE", "#FF851B", "#7FDBFF", "#870C25"];
  const MAX_SIDE = 30;
  let current = null;

  function blank(rows, cols) {
    return Array.from({ length: rows }, () => Array(cols).fill(0));
  }

  function flood(grid, row, col, colour) {
    const target = grid[row][col];
    if (target === colour) return;
    const stack = [[row, col]];
    while (stack.length) {
      const [r, c] = stack.pop();
      if (r < 0 || c < 0 || r >= grid.length || c >= grid[0].length || grid[r][c] !== target) continue;
      grid[r][c] = colour;
      stack.push([r + 1, c], [r - 1, c], [r, c + 1], [r, c - 1]);
    }
  }

  function element(tag, attributes, text) {
    const node = document.createElement(tag);
    Object.entries(attributes || {}).forEach(([key, value]) => node.setAttribute(key, value));
    if (text) node.textContent = text;
    return node;
  }

  function build(root) {
    root.dataset.ready = "yes";
    const input = JSON.parse(root.dataset.input);
    const state = { grid: blank(input.length, input[0].length), colour: 0, tool: "paint", down: false };
    current = state;
    root.textContent = "";
    const bar = element("div", { class: "gelato-arc-bar" });
    const rows = element("input", { type: "number", min: 1, max: MAX_SIDE, value: input.length,
                                    "aria-label": "rows", id: "arc-rows" });
    const cols = element("input", { type: "number", min: 1, max: MAX_SIDE, value: input[0].length,
                                    "aria-label": "columns", id: "arc-cols" });
    const resize = element("button", { type: "button", id: "arc-resize" }, "Resize");
    const copy = element("button", { type: "button", id: "arc-copy" }, "Copy input");
    const reset = element("button", { type: "button", id: "arc-reset" }, "Reset");
    const tool = element("select", { id: "arc-tool", "aria-label": "tool" });
    tool.append(element("option", { value: "paint" }, "Paint"), element("option", { value: "fill" }, "Flood fill"));
    bar.append("Size ", rows, " x ", cols, resize, copy, reset, tool);
    const palette = element("div", { class: "gelato-arc-palette", role: "radiogroup", "aria-label": "colour" });
    PALETTE.forEach((colour, index) => {
      const swatch = element("button", { type: "button", class: "gelato-arc-swatch", "data-colour": index,
                                         "aria-label": "colour " + index, style: "background:" + colour });
      palette.append(swatch);
    });
    const board = element("div", { class: "gelato-arc-board", id: "arc-board" });
    root.append(bar, palette, board);

    function draw() {
      const grid = state.grid;
      board.style.gridTemplateColumns = "repeat(" + grid[0].length + ", var(--arc-cell))";
      board.textContent = "";
      grid.forEach((line, r) => line.forEach((value, c) => {
        board.append(element("div", { class: "gelato-arc-cell", "data-row": r, "data-col": c,
                                      style: "background:" + PALETTE[value] }));
      }));
      palette.querySelectorAll("button").forEach((b) =>
        b.classList.toggle("chosen", Number(b.dataset.colour) === state.colour));
      rows.value = grid.length;
      cols.value = grid[0].length;
    }

    function paint(cell) {
      const r = Number(cell.dataset.row), c = Number(cell.dataset.col);
      if (state.tool === "fill") flood(state.grid, r, c, state.colour);
      else state.grid[r][c] = state.colour;
      draw();
    }

    resize.addEventListener("click", () => {
      const h = Math.min(MAX_SIDE, Math.max(1, Number(rows.value) || 1));
      const w = Math.min(MAX_SIDE, Math.max(1, Number(cols.value) || 1));
      state.grid = blank(h, w).map((line, r) => line.map((v, c) => (state.grid[r] && state.grid[r][c]) || 0));
      draw();
    });
    copy.addEventListener("click", () => { state.grid = input.map((line) => line.slice()); draw(); });
    reset.addEventListener("click", () => { state.grid = blank(state.grid.length, state.grid[0].length); draw(); });
    tool.addEventListener("change", () => { state.tool = tool.value; });
    palette.addEventListener("click", (event) => {
      const swatch = event.target.closest("button");
      if (swatch) { state.colour = Number(swatch.dataset.colour); draw(); }
    });
    board.addEventListener("mousedown", (event) => {
      const cell = event.target.closest(".gelato-arc-cell");
      if (!cell) return;
      event.preventDefault();
      state.down = state.tool === "paint";
      paint(cell);
    });
    board.addEventListener("mouseover", (event) => {
      const cell = event.target.closest(".gelato-arc-cell");
      if (cell && state.down) paint(cell);
    });
    document.addEventListener("mouseup", () => { state.down = false; });
    draw();
  }

  function scan() {
    document.querySelectorAll(".gelato-arc:not([data-ready])").forEach(build);
  }

  new MutationObserver(scan).observe(document.documentElement, { childList: true, subtree: true });
  document.addEventListener("DOMContentLoaded", scan);
  window.gelatoArcGrid = () => (current ? JSON.stringify(current.grid) : "");
})();

// The Challenge clock (app/pages/challenge.py): counts from the moment the run's clock element appears.
setInterval(() => {
  document.querySelectorAll(".gelato-clock").forEach((clock) => {
    if (!clock.dataset.shownAt) clock.dataset.shownAt = String(Date.now());
    const seconds = Math.floor((Date.now() - Number(clock.dataset.shownAt)) / 1000);
    clock.textContent = "⏱ " + Math.floor(seconds / 60) + ":" + String(seconds % 60).padStart(2, "0");
  });
}, 1000);

// Play (app/pages/play.py): while an example or a random puzzle is being filled in, the model's buttons wait, so a
// quick click cannot send the previous prompt (the browser sends what the slots hold at the moment of the click).
window.gelatoHoldModelButtons = (hold) => {
  ["solve", "rank", "model-sees"].forEach((id) => {
    const button = document.getElementById(id);
    if (button) {
      button.disabled = hold;
      button.toggleAttribute("data-held", hold);
    }
  });
};
