// A code block whose lines run wider than the block gets the class "overflows" (see
// stylesheets/code.css): the copy button then sits in a strip of its own above the code, instead of
// on top of a line's text. Checked again when the window's width changes.
function markOverflowingCode() {
  for (const code of document.querySelectorAll(".md-typeset pre > code")) {
    code.classList.toggle("overflows", code.scrollWidth > code.clientWidth + 1);
  }
}
window.addEventListener("load", markOverflowingCode);
window.addEventListener("resize", markOverflowingCode);
