/*
 * The Wink Widget: runs in an iframe served by the Smile server, calls /link/v1 with the user's
 * link token, and tells the host page what happens through postMessage (the SDK turns the
 * messages into callbacks). Messages are accepted only from the parent window, from the
 * origin the SDK named.
 */
(function () {
  'use strict';

  var TEXT = {
    en: {
      close: 'Close', back: 'Back', consentTitle: 'Connect your data', consentLead: '{company} uses Smile to verify your work and income',
      consentPoints: ['Your login details are never shared with {company}.', 'You choose which accounts to connect.',
        'You can disconnect at any time.'],
      continue: 'Continue', chooseProvider: 'Choose where you work or earn', search: 'Search', all: 'All',
      types: { GIG: 'Gig', GOVERNMENT: 'Government', EMPLOYER: 'Employer', SYSTEM: 'Payroll & HR', CREDENTIAL: 'Credentials' },
      upload: 'Upload documents instead', survey: "Can't find your employer?", loginTitle: 'Log in to {provider}',
      username: 'E-mail', phone: 'Phone number', ssNumber: 'Social security number', password: 'Password',
      logIn: 'Log in', otherWays: 'Other ways to log in', optionsTitle: 'Choose how to log in', email: 'E-mail',
      mfaTitle: 'Enter your verification code', mfaLead: '{provider} sent a code to your phone or e-mail.', code: 'Verification code',
      verify: 'Verify', connectedTitle: 'Connected!', connectedLead: 'Your {provider} account is connected.', done: 'Done',
      connectAnother: 'Connect another account', statusTitle: '{provider} account', status: 'Status: ', disconnect: 'Disconnect',
      surveyTitle: 'Tell us your employer', employer: 'Employer name', submit: 'Submit', surveyThanks: 'Thank you! We passed {employer} on to {company}.',
      fileTypesTitle: 'What would you like to upload?', uploadTitle: 'Upload {type}', chooseFile: 'File (PDF, PNG, JPG or TIFF, up to 15 MB)',
      send: 'Upload', archiveDone: 'Uploaded!', archiveLead: 'We are reading your document now.', viewUploads: 'View my uploads',
      uploadsTitle: 'My uploads', delete: 'Delete', noUploads: 'No uploads yet.', errorTitle: 'Something went wrong', tryAgain: 'Try again',
      exit: 'Exit', working: 'Working…', expired: 'Your session expired. Reconnecting…', securedBy: 'Secured by Smile',
      tooBig: 'That file is over 15 MB.', pickFile: 'Choose a file first.', dropHere: 'Drag a file here, or',
      chooseOne: 'choose one', uploading: 'Uploading… {pct}%',
      errorCode: 'Error code: {code}', resend: 'Resend code', codeResent: 'We sent a new code.',
      triesLeft: 'That code is not right. You have {n} tries left.', lastTry: 'That code is not right. You have 1 try left.',
      cancel: 'Cancel', confirmDisconnect: 'Disconnect your {provider} account? {company} will stop receiving updates from it.',
      disconnected: 'Your {provider} account is disconnected.', confirmDelete: 'Delete this upload? This cannot be undone.',
      deleted: 'The upload is deleted.', yourCompany: 'The company', providerTypes: 'Provider types',
      noMatch: 'Nothing matches “{text}”.', noMatchUpload: 'Check the spelling, try another type, or upload documents instead.',
      noMatchSurvey: 'Check the spelling, try another type, or tell us your employer below.',
      statuses: { CONNECTED: 'Connected', AWAITING_MFA: 'Waiting for a code', PENDING: 'Connecting', ERROR: 'Needs attention',
        REVOKED: 'Disconnected', STARTED: 'Reading', ANALYZED: 'Read', UNSUPPORTED: 'Could not be read' },
      fileTypes: { PAYSLIP: 'Payslips', SOCIAL_SECURITY: 'Social security records', INCOME_TAX: 'Income tax returns',
        EMPLOYMENT_CERTIFICATE: 'Certificates of employment', BANK_STATEMENT: 'Bank statements' },
      errors: {
        ACCOUNT_DISABLED: 'This account is disabled at {provider}. Contact {provider} to turn it back on.',
        ACCOUNT_INACCESSIBLE: '{provider} does not let us reach this account right now.',
        ACCOUNT_INCOMPLETE: 'This account is not fully set up at {provider}. Finish setting it up there, then try again.',
        ACCOUNT_LOCKED: 'This account is locked at {provider}. Unlock it with {provider}, then try again.',
        AUTH_REQUIRED: 'Enter your login details to continue.',
        EXPIRED_CREDENTIALS: 'Your {provider} password has expired. Reset it with {provider}, then try again.',
        INVALID_ACCOUNT_TYPE: 'This kind of {provider} account cannot be connected.',
        INVALID_AUTH: 'We could not log you in to {provider}. Check your details and try again.',
        INVALID_CREDENTIALS: 'That e-mail or password is not right. Check them and try again.',
        INVALID_MFA: 'The verification code was not right too many times.',
        MFA_TIMEOUT: 'The verification code was not entered in time.',
        SERVICE_UNAVAILABLE: '{provider} is not available right now. Try again in a few minutes.',
        SYSTEM_ERROR: 'Something went wrong on our side. Try again in a few minutes.',
        TOS_REQUIRED: 'Accept the terms of service at {provider} first, then try again.',
        UNSUPPORTED_AUTH_TYPE: 'This way of logging in to {provider} is not supported yet.',
        UNSUPPORTED_MFA_METHOD: 'This kind of verification is not supported yet.',
        OTHER: 'Something went wrong. Try again in a few minutes.'
      }
    }

  };

  // Other languages come in a file of their own, fetched only when asked for.
  var LOCALES = ['zh-CN'];

  function loadLocale(locale) {
    return new Promise(function (resolve) {
      if (LOCALES.indexOf(locale) < 0 || TEXT[locale]) {
        resolve();
        return;
      }
      var script = document.createElement('script');
      script.src = '/widget/' + locale + '.js';
      script.onload = function () {
        TEXT[locale] = (window.SmileWidgetText || {})[locale];
        resolve();
      };
      // On an error, English, then.
      script.onerror = function () { resolve(); };
      document.head.appendChild(script);
    });
  }

  var params = new URLSearchParams(window.location.search);
  var parentOrigin = params.get('parentOrigin');
  // The tenant and mode whose framing policy this page was served with; production link calls
  // must carry it.
  var frameKey = params.get('frame') || '';
  var app = document.getElementById('app');
  var state = { options: {}, token: null, session: null, providers: [], accounts: [], text: TEXT.en, pending: [] };

  // ---- talking to the host page ----

  function send(message) {
    message.smile = 1;
    // An opaque parent ("null", a sandboxed frame) cannot be addressed by origin, only as our
    // parent window.
    window.parent.postMessage(message, parentOrigin === 'null' ? '*' : parentOrigin);
  }

  function emit(name, payload) {
    send({ type: 'callback', name: name, payload: payload });
  }

  function uiEvent(eventName, account, archive) {
    emit('onUIEvent', {
      eventName: eventName, eventTime: new Date().toISOString(), mode: state.session ? state.session.mode : null,
      userId: state.session ? state.session.userId : null, account: account || {}, archive: archive || {}
    });
  }

  window.addEventListener('message', function (event) {
    // Only the page that embeds us, from the origin it announced.
    if (event.source !== window.parent || event.origin !== parentOrigin) {
      return;
    }
    var message = event.data;
    if (!message || message.smile !== 1) {
      return;
    }
    if (message.type === 'init' && !state.token) {
      start(message.options || {});
    } else if (message.type === 'token' && message.userToken) {
      state.token = message.userToken;
      // Every call that met the expired token resumes, not only the last one.
      var waiting = state.pending;
      state.pending = [];
      waiting.forEach(function (retry) { retry(); });
    }
  });

  // ---- the link API ----

  function api(method, path, body, isForm) {
    return new Promise(function (resolve, reject) {
      function attempt() {
        var used = state.token;
        var headers = { Authorization: 'Bearer ' + used, 'X-Smile-Frame': frameKey };
        if (body && !isForm) {
          headers['Content-Type'] = 'application/json';
        }
        fetch('/link/v1' + path, { method: method, headers: headers, body: isForm ? body : body ? JSON.stringify(body) : undefined })
          .then(function (response) {
            return response.json().then(function (json) {
              if (response.status === 401 && json.code === 'INVALID_TOKEN') {
                // A fresh token came while this call was out: try again with it.
                if (used !== state.token) {
                  return attempt();
                }
                // Else wait for the host page's updateToken(), then carry on where we were.
                // The host hears of the expiry once, however many calls are waiting.
                state.pending.push(attempt);
                if (state.pending.length === 1) {
                  notice(state.text.expired);
                  emit('onTokenExpired');
                }
                return;
              }
              if (!response.ok) {
                reject(json);
              } else {
                resolve(json.data);
              }
            });
          })
          .catch(function () {
            reject({ code: 'SERVER_UNAVAILABLE', message: 'The network is not reachable.' });
          });
      }
      attempt();
    });
  }

  // ---- rendering ----

  function fill(text, values) {
    return text.replace(/\{(\w+)\}/g, function (_, name) { return (values || {})[name] || ''; });
  }

  function t(key, values) {
    var text = state.text[key] || TEXT.en[key] || key;
    return typeof text === 'string' ? fill(text, values) : text;
  }

  // Account errors a user can mend at the login form, and those where trying again can work.
  var LOGIN_ERRORS = ['INVALID_CREDENTIALS', 'AUTH_REQUIRED', 'INVALID_AUTH'];
  var RETRYABLE = LOGIN_ERRORS.concat(['INVALID_MFA', 'MFA_TIMEOUT', 'SERVICE_UNAVAILABLE', 'SYSTEM_ERROR', 'TOS_REQUIRED',
    'EXPIRED_CREDENTIALS', 'ACCOUNT_INCOMPLETE', 'ACCOUNT_LOCKED']);

  /** A word for an internal value (a status, a file type), in the widget's language. */
  function word(group, value) {
    return (state.text[group] || {})[value] || (TEXT.en[group] || {})[value] || value;
  }

  /** A date and time as people in the widget's language write them. */
  function when(iso) {
    var date = new Date(iso);
    return isNaN(date) ? '' : date.toLocaleString(document.documentElement.lang || 'en', { dateStyle: 'medium', timeStyle: 'short' });
  }

  /** The sentence a person reads for an account error code, in the widget's language. */
  function sentence(code, providerId) {
    var errors = state.text.errors || TEXT.en.errors;
    return fill(errors[code] || errors.OTHER, { provider: providerName(providerId) });
  }

  // Latin words inside text of another language (names, "Smile", a server's message): marked
  // lang="en", so that screen readers say them in English.
  var LATIN = /[A-Za-z][A-Za-z0-9.,'&@+-]*(?: +[A-Za-z0-9][A-Za-z0-9.,'&@+-]*)*/g;

  function appendText(node, text) {
    text = String(text);
    if (state.text === TEXT.en || !/[A-Za-z]/.test(text)) {
      node.appendChild(document.createTextNode(text));
      return;
    }
    var at = 0;
    text.replace(LATIN, function (word, index) {
      node.appendChild(document.createTextNode(text.slice(at, index)));
      var span = document.createElement('span');
      span.lang = 'en';
      span.textContent = word;
      node.appendChild(span);
      at = index + word.length;
    });
    node.appendChild(document.createTextNode(text.slice(at)));
  }

  function el(tag, attributes, children) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (name) {
      var value = attributes[name];
      if (name === 'onclick' || name === 'onsubmit' || name === 'oninput') {
        node.addEventListener(name.slice(2), value);
      } else if (name === 'text') {
        appendText(node, value);
      } else if (value !== false && value != null) {
        node.setAttribute(name, value === true ? '' : value);
      }
    });
    (children || []).forEach(function (child) {
      if (child) {
        if (typeof child === 'string') { appendText(node, child); } else { node.appendChild(child); }
      }
    });
    return node;
  }

  /** A padlock, drawn here: no icon font or image host needed. */
  function lockMark() {
    var mark = el('div', { class: 'mark info', 'aria-hidden': 'true' });
    mark.innerHTML = '<svg width="30" height="30" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" ' +
      'stroke-linecap="round"><rect x="5" y="11" width="14" height="10" rx="2"/><path d="M8 11V7a4 4 0 0 1 8 0v4"/></svg>';
    return mark;
  }

  function page(name, title, content, back) {
    app.textContent = '';
    app.setAttribute('data-page', name);
    var heading = el('h1', { text: title, tabindex: '-1' });
    var header = el('header', { class: 'bar' }, [
      back ? el('button', { class: 'icon', 'aria-label': t('back'), text: '‹', onclick: back }) : null,
      heading,
      el('button', { class: 'icon', 'aria-label': t('close'), 'data-close': '', text: '×', onclick: function () { emit('onClose', { reason: 'close' }); } })
    ]);
    app.appendChild(header);
    app.appendChild(el('section', { class: 'content' }, content));
    app.appendChild(el('p', { class: 'fine', text: t('securedBy') }));
    heading.focus();
  }

  function notice(message) {
    var existing = app.querySelector('[role=status]');
    var node = existing || el('p', { role: 'status', class: 'muted' });
    node.textContent = '';
    appendText(node, message);
    // Before the first page there is nowhere to show it (the token may expire that early).
    var content = app.querySelector('.content');
    if (!existing && content) {
      content.prepend(node);
    }
  }

  function busy(button, promise) {
    button.disabled = true;
    button.textContent = t('working');
    return promise;
  }

  function providerName(id) {
    var provider = state.providers.filter(function (p) { return p.id === id; })[0];
    return provider ? provider.name : id;
  }

  // ---- pages ----

  function start(options) {
    state.options = options;
    state.token = options.userToken;
    var session = api('GET', '/session');
    // A production token works only in this page served under its frame key, with its
    // tenant's framing rules: load that one (the SDK then starts it again).
    session.then(function (s) {
      if (s.mode === 'PRODUCTION' && s.frame !== frameKey) {
        state.moving = true;
        location.replace('?frame=' + s.frame + '&parentOrigin=' + encodeURIComponent(parentOrigin));
      }
    });
    Promise.all([session, api('GET', '/providers?size=150'), api('GET', '/accounts?size=150'),
      loadLocale(options.locale)])
      .then(function (results) {
        state.text = TEXT[options.locale] || TEXT.en;
        document.documentElement.lang = TEXT[options.locale] ? options.locale : 'en';
        state.session = results[0];
        state.providers = results[1].items;
        state.accounts = results[2].items;
        var only = (options.providers || []).length === 1 ? options.providers[0] : null;
        if (options.enableConsentPage === false) {
          only ? loginPage(only) : providerList();
        } else {
          consentPage(only);
        }
      })
      .catch(function (error) {
        if (!state.moving) {
          errorPage(error);
        }
      });
  }

  function consentPage(only) {
    var company = state.options.companyName || 'This app';
    page('consent', t('consentTitle'), [
      el('div', { class: 'hero' }, [lockMark()]),
      el('p', { class: 'lead', text: t('consentLead', { company: company }) }),
      el('ul', { class: 'points' }, t('consentPoints').map(function (p) { return el('li', { text: p.replace('{company}', company) }); })),
      el('div', { class: 'actions' }, [
        el('button', { class: 'primary', text: t('continue'), onclick: function () { only ? loginPage(only) : providerList(); } })
      ])
    ]);
    uiEvent('ConsentPageOpened');
  }

  function visibleProviders() {
    var o = state.options;
    var top = o.topProviders || [];
    // Upload-only sources are reached through "Upload documents" (enableUpload), not a login.
    return state.providers
      .filter(function (p) { return p.accountConnection; })
      .filter(function (p) { return !o.providers || !o.providers.length || o.providers.indexOf(p.id) >= 0; })
      .sort(function (a, b) {
        var ia = top.indexOf(a.id), ib = top.indexOf(b.id);
        return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib);
      });
  }

  function providerList() {
    var o = state.options;
    var filter = { text: '', type: null };
    var list = el('ul', { class: 'list', 'aria-label': t('chooseProvider') });
    function draw() {
      list.textContent = '';
      var shown = visibleProviders()
        .filter(function (p) { return !filter.type || p.type === filter.type; })
        .filter(function (p) { return !filter.text || p.name.toLowerCase().indexOf(filter.text) >= 0 || p.longName.toLowerCase().indexOf(filter.text) >= 0; });
      if (!shown.length) {
        list.appendChild(el('li', { class: 'empty', role: 'status' }, [el('p', { text: t('noMatch', { text: filter.text }) }),
          el('p', { class: 'muted', text: o.enableUpload ? t('noMatchUpload') : t('noMatchSurvey') })]));
      }
      shown.forEach(function (p) {
          var account = accountFor(p.id);
          list.appendChild(el('li', {}, [el('button', {
            'data-provider': p.id,
            onclick: function () { account ? accountPage(account) : loginPage(p.id); }
          }, [
            el('img', { src: p.logoUrl, alt: '' }),
            el('span', { class: 'grow' }, [el('span', { text: p.name }), el('small', { text: word('types', p.type) })]),
            account ? el('span', { class: 'badge ' + account.connectionStatus, text: word('statuses', account.connectionStatus) }) : null
          ])]));
        });
    }
    var types = ['GIG', 'GOVERNMENT', 'EMPLOYER', 'SYSTEM', 'CREDENTIAL'];
    var tabs = el('div', { class: 'tabs', role: 'group', 'aria-label': t('providerTypes') },
      [null].concat(types).map(function (type) {
        return el('button', {
          'aria-pressed': type === null ? 'true' : 'false', text: type ? t('types')[type] : t('all'),
          onclick: function (event) {
            filter.type = type;
            tabs.querySelectorAll('button').forEach(function (b) { b.setAttribute('aria-pressed', 'false'); });
            event.currentTarget.setAttribute('aria-pressed', 'true');
            draw();
          }
        });
      }));
    var search = el('label', {}, [t('search'), el('input', {
      type: 'search', placeholder: t('search'),
      oninput: function (event) { filter.text = event.target.value.trim().toLowerCase(); draw(); }
    })]);
    page('providers', t('chooseProvider'), [
      o.enableSearchBar === false ? null : search,
      o.enableTypeBar === false ? null : tabs,
      list,
      el('button', { class: 'linkish', text: t('survey'), onclick: surveyPage }),
      o.enableUpload ? el('button', { class: 'secondary', text: t('upload'), onclick: fileTypeList }) : null
    ]);
    draw();
    uiEvent('ProviderListPageOpened');
  }

  function accountFor(providerId) {
    return state.accounts.filter(function (a) {
      return a.providerId === providerId && (a.connectionStatus === 'CONNECTED' || a.connectionStatus === 'AWAITING_MFA');
    })[0];
  }

  function rememberAccount(account) {
    state.accounts = state.accounts.filter(function (a) { return a.id !== account.id; }).concat([account]);
  }

  function ids(account) {
    return { accountId: account.id, userId: state.session.userId, providerId: account.providerId };
  }

  /** Where a login or a code leads; `retryLogin(message)` shows the login form again. */
  function afterLogin(account, retryLogin) {
    rememberAccount(account);
    var connection = account.connection || {};
    if (account.connectionStatus === 'AWAITING_MFA') {
      var left = connection.mfaAttemptsLeft;
      mfaPage(account, connection.errorCode === 'INVALID_MFA' ? (left === 1 ? t('lastTry') : t('triesLeft', { n: left })) : null);
    } else if (account.connectionStatus === 'CONNECTED') {
      emit('onAccountConnected', ids(account));
      successPage(account);
    } else {
      var payload = ids(account);
      payload.errorCode = connection.errorCode;
      emit('onAccountError', payload);
      if (retryLogin && LOGIN_ERRORS.indexOf(connection.errorCode) >= 0) {
        retryLogin(sentence(connection.errorCode, account.providerId));
      } else {
        errorPage({ code: connection.errorCode, providerId: account.providerId });
      }
    }
  }

  /** A form's message after a mistake: read out at once, and tied to the field to fix. */
  function inlineError(id, message, field) {
    field.setAttribute('aria-invalid', 'true');
    field.setAttribute('aria-describedby', id);
    return el('p', { class: 'error', role: 'alert', id: id, text: message });
  }

  /** `kept`, after a failed login: the identifier typed, and what went wrong. */
  function loginPage(providerId, loginOption, kept) {
    var provider = state.providers.filter(function (p) { return p.id === providerId; })[0] || { name: providerId, loginOptions: [] };
    var option = loginOption || (provider.loginOptions[0] || 'EMAIL');
    var labels = { EMAIL: t('username'), PHONE: t('phone'), SS_NUMBER: t('ssNumber') };
    var username = el('input', { type: 'text', name: 'username', autocomplete: 'username', required: true });
    var password = el('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
    var button = el('button', { class: 'primary', type: 'submit', text: t('logIn') });
    if (kept) {
      username.value = kept.username;
    }
    var retry = function (message) {
      loginPage(providerId, option, { username: username.value, error: message });
    };
    var form = el('form', {
      class: 'content', onsubmit: function (event) {
        event.preventDefault();
        busy(button, api('POST', '/accounts', { providerId: providerId, username: username.value, password: password.value }))
          .then(function (account) {
            emit('onAccountCreated', ids(account));
            afterLogin(account, retry);
          })
          .catch(errorPage);
      }
    }, [
      el('p', { class: 'muted', text: state.options.companyName ? state.options.companyName + ' · Smile' : '' }),
      kept ? inlineError('login-error', kept.error, password) : null,
      el('label', {}, [labels[option] || t('username'), username]),
      el('label', {}, [t('password'), password]),
      provider.loginOptions.length > 1
        ? el('button', { type: 'button', class: 'linkish', text: t('otherWays'), onclick: function () { loginOptionsPage(provider); } })
        : null,
      el('div', { class: 'actions' }, [button])
    ]);
    page('login', t('loginTitle', { provider: provider.name }), [form], providerList);
    if (kept) {
      password.focus();
    }
    uiEvent('LoginPageOpened', { providerId: providerId });
  }

  function loginOptionsPage(provider) {
    var names = { EMAIL: t('email'), PHONE: t('phone'), SS_NUMBER: t('ssNumber') };
    page('loginOptions', t('optionsTitle'), [
      el('ul', { class: 'list' }, provider.loginOptions.map(function (option) {
        return el('li', {}, [el('button', { 'data-option': option, onclick: function () { loginPage(provider.id, option); } },
          [el('span', { class: 'grow', text: names[option] || option })])]);
      }))
    ], function () { loginPage(provider.id); });
    uiEvent('LoginOptionsPageOpened');
  }

  /** `error`: what was wrong with the last code, and how many tries are left. */
  function mfaPage(account, error) {
    var code = el('input', { type: 'text', name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', required: true });
    var button = el('button', { class: 'primary', type: 'submit', text: t('verify') });
    var resend = el('button', { class: 'secondary', type: 'button', text: t('resend') });
    resend.addEventListener('click', function () {
      busy(resend, api('POST', '/accounts/' + account.id + '/mfa/resend', {})).then(function (waiting) {
        mfaPage(waiting);
        notice(t('codeResent'));
      }).catch(errorPage);
    });
    var name = providerName(account.providerId);
    page('mfa', t('mfaTitle'), [el('form', {
      class: 'content', onsubmit: function (event) {
        event.preventDefault();
        busy(button, api('POST', '/accounts/' + account.id + '/mfa', { code: code.value }))
          .then(function (answer) { afterLogin(answer); })
          .catch(errorPage);
      }
    }, [el('p', { class: 'muted', text: t('mfaLead', { provider: name }) }),
      error ? inlineError('mfa-error', error, code) : null,
      el('label', {}, [t('code'), code]),
      el('div', { class: 'actions' }, [button, resend])])], function () { loginPage(account.providerId); });
    if (error) {
      code.focus();
    }
    uiEvent('MfaPageOpened', { providerId: account.providerId });
  }

  function successPage(account) {
    page('connected', t('connectedTitle'), [
      el('div', { class: 'hero' }, [el('div', { class: 'mark ok', 'aria-hidden': 'true', text: '✓' }),
        el('p', { class: 'lead', text: t('connectedLead', { provider: providerName(account.providerId) }) })]),
      el('div', { class: 'actions' }, [
        el('button', { class: 'primary', text: t('done'), onclick: function () { emit('onClose', { reason: 'exit' }); } }),
        el('button', { class: 'secondary', text: t('connectAnother'), onclick: providerList })
      ])
    ]);
    uiEvent('ConnectSuccessPageOpened', { providerId: account.providerId, accountId: account.id });
  }

  function accountPage(account) {
    var button = el('button', { class: 'danger', text: t('disconnect'), onclick: function () { confirmDisconnect(account); } });
    page('account', t('statusTitle', { provider: providerName(account.providerId) }), [
      el('p', {}, [t('status'), el('span', { class: 'badge ' + account.connectionStatus, text: word('statuses', account.connectionStatus) })]),
      el('div', { class: 'actions' }, [button])
    ], providerList);
    uiEvent('AccountRevokePageOpened', { providerId: account.providerId, accountId: account.id });
  }

  /** Disconnecting is asked once more, then said to be done. */
  function confirmDisconnect(account) {
    var provider = providerName(account.providerId);
    var button = el('button', { class: 'danger', text: t('disconnect') });
    button.addEventListener('click', function () {
      busy(button, api('DELETE', '/accounts/' + account.id)).then(function (removed) {
        rememberAccount(removed);
        emit('onAccountRemoved', ids(removed));
        providerList();
        notice(t('disconnected', { provider: provider }));
      }).catch(errorPage);
    });
    var company = state.options.companyName || t('yourCompany');
    page('confirmDisconnect', t('statusTitle', { provider: provider }), [
      el('p', { class: 'lead', text: t('confirmDisconnect', { provider: provider, company: company }) }),
      el('div', { class: 'actions' }, [button,
        el('button', { class: 'secondary', text: t('cancel'), onclick: function () { accountPage(account); } })])
    ], function () { accountPage(account); });
  }

  function surveyPage() {
    var employer = el('input', { type: 'text', name: 'employer', required: true });
    var content = el('form', {
      class: 'content', onsubmit: function (event) {
        event.preventDefault();
        var button = content.querySelector('button[type=submit]');
        busy(button, api('POST', '/employerSurveys', { employerName: employer.value })).then(function (survey) {
          page('surveyThanks', t('surveyTitle'), [el('div', { class: 'hero' }, [el('div', { class: 'mark ok', 'aria-hidden': 'true', text: '✓' }),
            el('p', { class: 'lead', text: t('surveyThanks', { employer: survey.employerName, company: state.options.companyName || t('yourCompany').toLowerCase() }) })]),
          el('div', { class: 'actions' }, [el('button', { class: 'primary', text: t('done'), onclick: providerList })])], providerList);
          uiEvent('EmployerSurveySubmitted');
        }).catch(errorPage);
      }
    }, [el('label', {}, [t('employer'), employer]), el('div', { class: 'actions' }, [el('button', { class: 'primary', type: 'submit', text: t('submit') })])]);
    page('survey', t('surveyTitle'), [content], providerList);
    uiEvent('EmployerSurveyPageOpened');
  }

  function fileTypeList() {
    api('GET', '/fileTypes').then(function (types) {
      page('fileTypes', t('fileTypesTitle'), [el('ul', { class: 'list' }, types.items.map(function (type) {
        return el('li', {}, [el('button', { 'data-file-type': type.type, onclick: function () { uploadPage(type); } },
          [el('span', { class: 'grow', text: word('fileTypes', type.type) })])]);
      })), el('button', { class: 'linkish', text: t('viewUploads'), onclick: uploadsPage })], providerList);
      uiEvent('FileTypeListPageOpened');
    }).catch(errorPage);
  }

  /** POSTs an upload, reporting its progress; an expired token takes the usual path. */
  function sendUpload(form, progress) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open('POST', '/link/v1/archives');
      xhr.setRequestHeader('Authorization', 'Bearer ' + state.token);
      xhr.setRequestHeader('X-Smile-Frame', frameKey);
      xhr.upload.onprogress = function (event) {
        if (event.lengthComputable) { progress(event.loaded / event.total); }
      };
      xhr.onload = function () {
        var json = {};
        try { json = JSON.parse(xhr.responseText); } catch (e) { /* not JSON: reported below */ }
        if (xhr.status === 401 && json.code === 'INVALID_TOKEN') {
          api('POST', '/archives', form, true).then(resolve, reject);
        } else if (xhr.status >= 200 && xhr.status < 300) {
          resolve(json.data);
        } else {
          reject(json.code ? json : { message: 'HTTP ' + xhr.status });
        }
      };
      xhr.onerror = function () { reject({ code: 'SERVER_UNAVAILABLE', message: 'The network is not reachable.' }); };
      xhr.send(form);
    });
  }

  function uploadPage(type) {
    var file = el('input', { type: 'file', name: 'file', class: 'file', accept: '.pdf,.png,.jpg,.jpeg,.tif,.tiff,application/pdf,image/png,image/jpeg,image/tiff' });
    var chosen = el('span', { class: 'chosen' });
    var bar = el('progress', { max: '100', value: '0', hidden: true, 'aria-label': t('uploading', { pct: '' }) });
    var zone = el('label', { class: 'drop' }, [file, el('span', { text: t('dropHere') }), el('span', { class: 'pick', text: t('chooseOne') }),
      el('small', { class: 'muted', text: t('chooseFile') }), chosen]);
    function show() {
      var f = file.files[0];
      var size = f && (f.size < 1024 * 1024 ? Math.ceil(f.size / 1024) + ' KB' : (f.size / 1024 / 1024).toFixed(1) + ' MB');
      chosen.textContent = f ? f.name + ' · ' + size : '';
    }
    file.addEventListener('change', show);
    zone.addEventListener('dragover', function (event) { event.preventDefault(); zone.classList.add('over'); });
    zone.addEventListener('dragleave', function () { zone.classList.remove('over'); });
    zone.addEventListener('drop', function (event) {
      event.preventDefault();
      zone.classList.remove('over');
      if (event.dataTransfer.files.length) {
        file.files = event.dataTransfer.files;
        show();
      }
    });
    var button = el('button', { class: 'primary', type: 'submit', text: t('send') });
    page('upload', t('uploadTitle', { type: word('fileTypes', type.type) }), [el('form', {
      class: 'content', onsubmit: function (event) {
        event.preventDefault();
        var picked = file.files[0];
        if (!picked) {
          return notice(t('pickFile'));
        }
        if (picked.size > 15 * 1024 * 1024) {
          return notice(t('tooBig'));
        }
        var form = new FormData();
        form.append('fileType', type.type);
        form.append('file', picked, picked.name);
        bar.hidden = false;
        busy(button, sendUpload(form, function (done) {
          bar.value = Math.round(done * 100);
          button.textContent = t('uploading', { pct: Math.round(done * 100) });
        })).then(function (archive) {
          emit('onUploadsCreated', { uploads: [archive], userId: state.session.userId });
          archiveSuccess(archive, type);
        }).catch(errorPage);
      }
    }, [zone, bar, el('div', { class: 'actions' }, [button])])], fileTypeList);
    uiEvent('FileTypePageOpened', null, { fileType: type.type });
  }

  function archiveSuccess(archive, type) {
    page('archiveSuccess', t('archiveDone'), [
      el('div', { class: 'hero' }, [el('div', { class: 'mark ok', 'aria-hidden': 'true', text: '✓' }), el('p', { class: 'lead', text: t('archiveLead') })]),
      el('div', { class: 'actions' }, [
        el('button', { class: 'primary', text: t('done'), onclick: function () { emit('onClose', { reason: 'exit' }); } }),
        el('button', { class: 'secondary', text: t('viewUploads'), onclick: uploadsPage })
      ])
    ]);
    uiEvent('ArchiveSuccessPageOpened', null, { fileType: type.type });
  }

  /** Deleting an upload is asked once more, then said to be done. */
  function confirmDelete(archive) {
    var button = el('button', { class: 'danger', text: t('delete') });
    button.addEventListener('click', function () {
      busy(button, api('DELETE', '/archives/' + archive.id)).then(function (removed) {
        emit('onUploadsRemoved', { uploads: [removed], userId: state.session.userId });
        return uploadsPage();
      }).then(function () { notice(t('deleted')); }).catch(errorPage);
    });
    page('confirmDelete', t('uploadsTitle'), [
      el('p', { class: 'lead', text: t('confirmDelete') }),
      el('div', { class: 'actions' }, [button, el('button', { class: 'secondary', text: t('cancel'), onclick: uploadsPage })])
    ], uploadsPage);
  }

  function uploadsPage() {
    return api('GET', '/archives').then(function (archives) {
      var items = archives.items.filter(function (a) { return a.state.status !== 'REVOKED'; });
      page('uploads', t('uploadsTitle'), [items.length ? el('ul', { class: 'list' }, items.map(function (archive) {
        var remove = el('button', { class: 'danger', 'data-delete': archive.id, text: t('delete'),
          onclick: function () { confirmDelete(archive); } });
        return el('li', { class: 'upload' }, [el('span', { class: 'grow' }, [el('span', { text: word('fileTypes', archive.type) }),
          el('small', { text: when(archive.createdAt) })]), el('span', { class: 'badge ' + archive.state.status, text: word('statuses', archive.state.status) }), remove]);
      })) : el('p', { class: 'muted', text: t('noUploads') })], fileTypeList);
      uiEvent('RevokeArchivePageOpened', null, { fileType: items[0] ? items[0].type : null });
    }).catch(errorPage);
  }

  /**
   * A terminal error. An account error code reads as a sentence with the code small, for
   * support; its main action is "Try again" where trying again can work.
   */
  function errorPage(error) {
    error = error || {};
    var known = error.code && (state.text.errors || TEXT.en.errors)[error.code];
    var message = known ? sentence(error.code, error.providerId) : (error.message || t('errorTitle'));
    var retry = null;
    if (known && error.providerId && RETRYABLE.indexOf(error.code) >= 0) {
      retry = function () { loginPage(error.providerId); };
    } else if (!known && state.session) {
      retry = providerList;
    }
    var exit = function () { emit('onClose', { reason: 'error' }); };
    var actions = retry
      ? [el('button', { class: 'primary', text: t('tryAgain'), onclick: retry }), el('button', { class: 'secondary', text: t('exit'), onclick: exit })]
      : [el('button', { class: 'primary', text: t('exit'), onclick: exit }),
        state.session ? el('button', { class: 'secondary', text: t('connectAnother'), onclick: providerList }) : null];
    page('error', t('errorTitle'), [
      el('div', { class: 'hero' }, [el('div', { class: 'mark bad', 'aria-hidden': 'true', text: '!' }),
        el('p', { class: 'error', role: 'alert', text: message }),
        error.code ? el('p', { class: 'code', text: t('errorCode', { code: error.code }) }) : null]),
      el('div', { class: 'actions' }, actions)
    ]);
  }

  // Escape closes the widget, as the close icon does; Tab and Shift+Tab go round the widget
  // instead of leaving it for the page behind.
  document.addEventListener('keydown', function (event) {
    if (event.key === 'Escape' && state.token) {
      emit('onClose', { reason: 'close' });
    } else if (event.key === 'Tab') {
      var focusable = Array.prototype.filter.call(
        app.querySelectorAll('button, a[href], input, select, textarea, [tabindex]:not([tabindex="-1"])'),
        function (element) { return !element.disabled && element.offsetParent !== null; });
      if (!focusable.length) { return; }
      var first = focusable[0], last = focusable[focusable.length - 1];
      var inside = focusable.indexOf(document.activeElement) >= 0;
      if (event.shiftKey && (document.activeElement === first || !inside)) {
        event.preventDefault();
        last.focus();
      } else if (!event.shiftKey && (document.activeElement === last || !inside)) {
        event.preventDefault();
        first.focus();
      }
    }
  });

  if (!parentOrigin) {
    app.textContent = 'Open the Wink Widget with new SmileLinkModal({ userToken }).open().';
  } else {
    send({ type: 'ready' });
  }
})();
