// The verify page's two small jobs that need a script.
//
// 1. Keep the URL fragment when switching language. The fragment holds the
//    document's salt; a plain "?lang=en" link would drop it. For the same
//    reason the skip link moves the focus itself instead of going to #main.
// 2. Check a PDF against the document id, on this device. The salt is in the
//    fragment, which browsers never send to a server, so only the page can do
//    it: doc_id = SHA-256(domain || salt || SHA-256(file)). The file is read
//    locally and hashed with WebCrypto; the page's CSP (connect-src 'none')
//    forbids any request, so nothing about the file can leave the device.
(function () {
  "use strict";

  var SALT_HEX = /^[0-9a-f]{32}$/;
  // The whole file is read into memory to be hashed (WebCrypto has no
  // streaming digest); past this a phone may fail, so say why instead.
  var MAX_FILE_BYTES = 1024 * 1024 * 1024;

  function skipLinks() {
    var links = document.querySelectorAll("a.skip");
    for (var i = 0; i < links.length; i++) {
      links[i].addEventListener("click", function (event) {
        var target = document.getElementById("main");
        if (!target) return;
        event.preventDefault();
        target.focus();
      });
    }
  }

  function keepHash() {
    var links = document.querySelectorAll("a[data-keep-hash]");
    for (var i = 0; i < links.length; i++) {
      var base = links[i].getAttribute("href").split("#")[0];
      links[i].setAttribute("href", base + location.hash);
    }
  }

  function saltFromHash() {
    var value = location.hash.replace(/^#/, "").toLowerCase();
    if (!SALT_HEX.test(value)) return null;
    var bytes = new Uint8Array(16);
    for (var i = 0; i < 16; i++) {
      bytes[i] = parseInt(value.substr(i * 2, 2), 16);
    }
    return bytes;
  }

  function toHex(buffer) {
    var bytes = new Uint8Array(buffer);
    var out = "";
    for (var i = 0; i < bytes.length; i++) {
      out += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
    }
    return out;
  }

  async function docIdOf(domain, salt, fileBytes) {
    var fileHash = new Uint8Array(await crypto.subtle.digest("SHA-256", fileBytes));
    var prefix = new TextEncoder().encode(domain);
    var message = new Uint8Array(prefix.length + salt.length + fileHash.length);
    message.set(prefix, 0);
    message.set(salt, prefix.length);
    message.set(fileHash, prefix.length + salt.length);
    return toHex(await crypto.subtle.digest("SHA-256", message));
  }

  function init() {
    keepHash();
    skipLinks();
    var box = document.getElementById("file-check");
    var input = document.getElementById("file-input");
    var zone = document.getElementById("drop-zone");
    var result = document.getElementById("file-result");
    var missing = document.getElementById("salt-missing");
    var chosen = document.getElementById("file-name");
    var hasCrypto = !!(window.crypto && window.crypto.subtle);
    var run = 0; // only the latest check may write the result
    var checkedHash = null; // the fragment the result on screen was made with

    function show(kind, message) {
      result.className = "result " + kind;
      result.textContent = "";
      if (kind === "match" || kind === "mismatch") {
        var mark = document.createElement("span");
        mark.setAttribute("aria-hidden", "true");
        mark.textContent = kind === "match" ? "\u2713 " : "\u2717 ";
        result.appendChild(mark);
      }
      result.appendChild(document.createTextNode(message));
      result.setAttribute("data-outcome", kind);
    }

    // The input itself is hidden (its button would be in the browser's
    // language), so the page says which file it is checking.
    function showName(name) {
      chosen.textContent = name;
      chosen.hidden = !name;
    }

    function clear() {
      run++; // a check still running is for the old fragment
      result.className = "result";
      result.textContent = "";
      result.removeAttribute("data-outcome");
      checkedHash = null;
      input.value = ""; // so that choosing the same file again checks it
      showName("");
    }

    function refresh() {
      keepHash();
      if (!box) return;
      // A result says whether the file matches with the salt it was made
      // with; under another fragment it would say something false.
      if (checkedHash !== null && checkedHash !== location.hash) clear();
      var salt = saltFromHash();
      missing.hidden = salt !== null;
      input.disabled = salt === null || !hasCrypto;
      if (salt !== null && !hasCrypto) show("error", box.dataset.msgNoCrypto);
    }

    async function check(file) {
      var salt = saltFromHash();
      if (salt === null) return refresh();
      var mine = ++run;
      checkedHash = location.hash;
      showName(file.name);
      if (file.size > MAX_FILE_BYTES) return show("error", box.dataset.msgTooLarge);
      show("pending", box.dataset.msgChecking);
      try {
        var bytes = await file.arrayBuffer();
        var computed = await docIdOf(box.dataset.domain, salt, bytes);
        if (mine !== run) return;
        var ok = computed === box.dataset.docId;
        if (ok) show("match", box.dataset.msgMatch);
        else show("mismatch", box.dataset.msgMismatch);
      } catch (err) {
        if (mine === run) show("error", box.dataset.msgReadError);
      }
    }

    window.addEventListener("hashchange", refresh);
    refresh();
    if (!box) return;

    input.addEventListener("change", function () {
      if (input.files && input.files.length) check(input.files[0]);
    });
    zone.addEventListener("dragover", function (event) {
      event.preventDefault();
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", function () {
      zone.classList.remove("over");
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      zone.classList.remove("over");
      if (!input.disabled && event.dataTransfer && event.dataTransfer.files.length) {
        check(event.dataTransfer.files[0]);
      }
    });
    // A file dropped beside the box would make the browser open it in place
    // of the page; swallow such drops.
    window.addEventListener("dragover", function (event) { event.preventDefault(); });
    window.addEventListener("drop", function (event) { event.preventDefault(); });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
