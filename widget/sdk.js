/*
 * Smile Link SDK: `new SmileLinkModal({ userToken, ...options, ...callbacks }).open()`.
 *
 * The Wink Widget runs in an iframe served by the Smile server. The two sides talk only through
 * postMessage, and each checks the other's origin and window: a message from the host page or
 * any other frame is ignored.
 */
(function () {
  'use strict';

  var script = document.currentScript;
  // A sandboxed frame (an iframe's srcdoc without allow-same-origin) has an opaque origin,
  // "null"; the widget frame inside it inherits the sandbox, so the two can only address each
  // other by window, not by origin.
  var pageOrigin = function () { return window.origin || window.location.origin; };
  var opaque = function () { return pageOrigin() === 'null'; };
  var scriptOrigin = script && script.src ? new URL(script.src).origin : window.location.origin;
  var CALLBACKS = [
    'onAccountCreated', 'onAccountConnected', 'onAccountRemoved', 'onAccountError', 'onTokenExpired',
    'onClose', 'onUploadsCreated', 'onUploadsRemoved', 'onUIEvent'
  ];
  var OPTIONS = [
    'userToken', 'templateId', 'topProviders', 'providers', 'enableSearchBar', 'enableTypeBar', 'enableUpload',
    'companyName', 'enableConsentPage', 'locale'
  ];

  function SmileLinkModal(options) {
    if (!(this instanceof SmileLinkModal)) {
      throw new TypeError('SmileLinkModal must be called with new');
    }
    options = options || {};
    if (!options.userToken) {
      throw new Error('SmileLinkModal: userToken is required');
    }
    if (options.topProviders && options.topProviders.length > 10) {
      throw new Error('SmileLinkModal: topProviders takes at most 10 provider ids');
    }
    this.options = options;
    this.apiHost = String(options.apiHost || scriptOrigin).replace(/\/+$/, '');
    this.widgetOrigin = new URL(this.apiHost).origin;
    this.frame = null;
    this.overlay = null;
    this.ready = false;
    this.onMessage = this.onMessage.bind(this);
  }

  SmileLinkModal.prototype.open = function () {
    if (this.overlay) {
      return this;
    }
    var overlay = document.createElement('div');
    overlay.setAttribute('data-smile-link', '');
    overlay.setAttribute('role', 'dialog');
    overlay.setAttribute('aria-modal', 'true');
    overlay.setAttribute('aria-label', 'Smile Wink Widget');
    overlay.style.cssText =
      'position:fixed;inset:0;z-index:2147483647;background:rgba(15,23,42,.55);display:flex;' +
      'align-items:center;justify-content:center;';
    var frame = document.createElement('iframe');
    frame.title = 'Smile Wink Widget';
    frame.src = this.apiHost + '/widget/?parentOrigin=' + encodeURIComponent(pageOrigin());
    frame.style.cssText = 'border:0;background:#fff;box-shadow:0 24px 64px rgba(0,0,0,.3);';
    // A card on larger screens, the whole screen on a phone. Styles are set through the DOM, not
    // a <style> element, so that a host page's strict CSP cannot block them.
    var phone = window.matchMedia ? window.matchMedia('(max-width: 480px)') : null;
    var fit = function () {
      var full = phone && phone.matches;
      frame.style.width = full ? '100vw' : 'min(420px,100vw)';
      frame.style.height = full ? '100dvh' : 'min(680px,100vh)';
      frame.style.borderRadius = full ? '0' : '16px';
    };
    fit();
    if (phone && phone.addEventListener) {
      phone.addEventListener('change', fit);
      this.unfit = function () { phone.removeEventListener('change', fit); };
    }
    frame.setAttribute('allow', 'clipboard-write');
    overlay.appendChild(frame);
    window.addEventListener('message', this.onMessage);
    // The page behind is inert while the widget is open: no focus, no clicks, nothing read out.
    this.opener = document.activeElement;
    this.inerted = [];
    for (var i = 0; i < document.body.children.length; i++) {
      var child = document.body.children[i];
      if (!child.inert) {
        child.inert = true;
        this.inerted.push(child);
      }
    }
    // The page behind does not scroll while the widget is open.
    this.overflow = document.documentElement.style.overflow;
    document.documentElement.style.overflow = 'hidden';
    document.body.appendChild(overlay);
    this.overlay = overlay;
    this.frame = frame;
    frame.focus();
    return this;
  };

  /** Closes the widget from the host page (no onClose: the user did not close it). */
  SmileLinkModal.prototype.close = function () {
    window.removeEventListener('message', this.onMessage);
    if (this.overlay && this.overlay.parentNode) {
      this.overlay.parentNode.removeChild(this.overlay);
    }
    (this.inerted || []).forEach(function (element) { element.inert = false; });
    if (this.overlay !== null && this.overflow !== undefined) {
      document.documentElement.style.overflow = this.overflow;
    }
    if (this.unfit) {
      this.unfit();
      this.unfit = null;
    }
    this.inerted = [];
    // Focus goes back to what opened the widget.
    if (this.opener && this.opener.focus && document.contains(this.opener)) {
      this.opener.focus();
    }
    this.opener = null;
    this.overlay = null;
    this.frame = null;
    this.ready = false;
  };

  /** Hands over a fresh link token after onTokenExpired; the widget carries on where it was. */
  SmileLinkModal.prototype.updateToken = function (userToken) {
    this.options.userToken = userToken;
    this.post({ type: 'token', userToken: userToken });
  };

  SmileLinkModal.prototype.post = function (message) {
    if (this.frame && this.frame.contentWindow && this.ready) {
      message.smile = 1;
      this.frame.contentWindow.postMessage(message, opaque() ? '*' : this.widgetOrigin);
    }
  };

  SmileLinkModal.prototype.settings = function () {
    var settings = {};
    for (var i = 0; i < OPTIONS.length; i++) {
      if (this.options[OPTIONS[i]] !== undefined) {
        settings[OPTIONS[i]] = this.options[OPTIONS[i]];
      }
    }
    return settings;
  };

  SmileLinkModal.prototype.onMessage = function (event) {
    // Only the widget's own frame, from the widget's own origin.
    var fromWidget = event.origin === this.widgetOrigin || (opaque() && event.origin === 'null');
    if (!this.frame || event.source !== this.frame.contentWindow || !fromWidget) {
      return;
    }
    var message = event.data;
    if (!message || message.smile !== 1) {
      return;
    }
    if (message.type === 'ready') {
      this.ready = true;
      this.post({ type: 'init', options: this.settings() });
    } else if (message.type === 'callback' && CALLBACKS.indexOf(message.name) >= 0) {
      var callback = this.options[message.name];
      if (message.name === 'onClose') {
        this.close();
      }
      if (typeof callback === 'function') {
        try {
          callback(message.payload);
        } catch (error) {
          setTimeout(function () { throw error; });
        }
      }
    }
  };

  window.SmileLinkModal = SmileLinkModal;
})();
