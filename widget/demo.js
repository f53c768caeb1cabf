// The demo page: what an integrator's page and backend would do, in one place. (A real
// integration keeps the API secret on its server; this demo runs against your own sandbox.)
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  // One inbox and one signing secret per browser session, kept across reloads, so that every
  // delivery this session's subscriptions make is verified with the secret that signed it.
  function remembered(name, make) {
    var value = sessionStorage.getItem('smile-demo-' + name) || make();
    if (value) { sessionStorage.setItem('smile-demo-' + name, value); }
    return value;
  }
  var secret = remembered('hook-secret', function () {
    var bytes = crypto.getRandomValues(new Uint8Array(16));
    return 'demo-' + Array.prototype.map.call(bytes, function (b) { return b.toString(16).padStart(2, '0'); }).join('');
  });
  var inbox = sessionStorage.getItem('smile-demo-inbox');
  var seen = 0;

  ['key', 'secret'].forEach(function (id) { $(id).value = sessionStorage.getItem('smile-demo-' + id) || ''; });

  function api(method, path, body) {
    return fetch(path, {
      method: method,
      headers: { Authorization: 'Basic ' + btoa($('key').value + ':' + $('secret').value), 'Content-Type': 'application/json' },
      body: body ? JSON.stringify(body) : undefined
    }).then(function (response) {
      return response.json().then(function (json) {
        if (!response.ok) { throw new Error(json.code + ': ' + json.message); }
        return json.data;
      });
    });
  }

  function item(list, title, detail, cls) {
    var li = document.createElement('li');
    var b = document.createElement('b');
    b.textContent = title;
    if (cls) { b.className = cls; }
    var pre = document.createElement('pre');
    pre.textContent = detail;
    li.appendChild(b);
    li.appendChild(pre);
    $(list).appendChild(li);
  }

  function hex(buffer) {
    return Array.prototype.map.call(new Uint8Array(buffer), function (b) { return b.toString(16).padStart(2, '0'); }).join('');
  }

  function verify(body, signature) {
    var encoder = new TextEncoder();
    return crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-512' }, false, ['sign'])
      .then(function (key) { return crypto.subtle.sign('HMAC', key, encoder.encode(body)); })
      .then(function (mac) { return signature.split(',').indexOf(hex(mac)) >= 0; });
  }

  function poll() {
    if (!inbox) { setTimeout(poll, 1000); return; }
    fetch('/demo/hooks/' + encodeURIComponent(inbox)).then(function (r) { return r.json(); }).then(function (json) {
      var deliveries = json.data.items.slice(seen);
      seen = json.data.items.length;
      deliveries.reduce(function (chain, d) {
        return chain.then(function () {
          return verify(d.body, d.signature).then(function (ok) {
            var event = JSON.parse(d.body);
            item('webhooks', event.type + (ok ? ' ✓ signed' : ' ✗ signature does not match'), JSON.stringify(event.data, null, 1), ok ? 'ok' : 'bad');
          });
        });
      }, Promise.resolve());
    }).catch(function () {}).then(function () { setTimeout(poll, 1000); });
  }

  var callbacks = {};
  ['onAccountCreated', 'onAccountConnected', 'onAccountRemoved', 'onAccountError', 'onClose', 'onUploadsCreated',
    'onUploadsRemoved', 'onUIEvent'].forEach(function (name) {
    callbacks[name] = function (payload) {
      item('callbacks', name === 'onUIEvent' ? 'onUIEvent · ' + payload.eventName : name, JSON.stringify(payload || {}, null, 1));
    };
  });

  $('keys').addEventListener('submit', function (event) {
    event.preventDefault();
    sessionStorage.setItem('smile-demo-key', $('key').value);
    sessionStorage.setItem('smile-demo-secret', $('secret').value);
    $('status').textContent = 'Subscribing the demo receiver and creating a user…';
    (inbox ? Promise.resolve({ id: inbox }) : api('POST', '/demo/inboxes')).then(function (created) {
      inbox = created.id;
      sessionStorage.setItem('smile-demo-inbox', inbox);
      return api('POST', '/v1/webhooks', {
        name: 'demo receiver', url: window.location.origin + '/demo/hooks/' + inbox, eventTypes: ['ALL_EVENTS'], active: true, secret: secret
      });
    }).then(function () {
      return api('POST', '/v1/users', { externalMetadata: { source: 'demo' } });
    }).then(function (created) {
      $('status').textContent = 'User ' + created.user.id + ' created. Connect an account in the widget.';
      var options = Object.assign({ userToken: created.token.accessToken, companyName: 'Demo Lending', enableUpload: true }, callbacks);
      options.onTokenExpired = function () {
        item('callbacks', 'onTokenExpired', '{}');
        api('POST', '/v1/tokens?userId=' + encodeURIComponent(created.user.id)).then(function (token) { modal.updateToken(token.accessToken); });
      };
      var modal = new SmileLinkModal(options);
      modal.open();
    }).catch(function (error) { $('status').textContent = error.message; });
  });

  poll();
})();
