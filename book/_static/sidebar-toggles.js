// Make the article header's sidebar buttons work on every screen width.
//
// pydata-sphinx-theme 0.17 adds its own ".primary-toggle" to the top navbar, and both it and
// sphinx-book-theme attach their handlers to the *first* ".primary-toggle" of the page only
// (pydata-sphinx-theme issue #2451). At a phone's width that first button is hidden and the
// visible one, in the article header, has no handler: the navigation cannot be opened. Here a
// click on any other toggle is forwarded to the first one, which does the theme's right thing
// for the width (a modal drawer when narrow, collapse the sidebar when wide).
document.addEventListener("DOMContentLoaded", () => {
  for (const kind of ["primary", "secondary"]) {
    const [first, ...others] = document.querySelectorAll(`.${kind}-toggle`);
    for (const button of others) {
      button.addEventListener("click", (event) => {
        event.preventDefault();
        event.stopPropagation();
        first.click();
      });
    }
  }
});
