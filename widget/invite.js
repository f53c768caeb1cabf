// The invite landing page: opens the widget with the invited user's link token.
(function () {
  'use strict';
  var token = new URLSearchParams(window.location.search).get('token');
  function open() {
    new SmileLinkModal({ userToken: token, enableUpload: true }).open();
  }
  document.getElementById('start').addEventListener('click', open);
  if (token) {
    open();
  }
})();
