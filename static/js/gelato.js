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
