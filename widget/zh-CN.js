// The Wink Widget's words in Simplified Chinese; widget.js loads this file only for locale zh-CN.
(function () {
  'use strict';
  window.SmileWidgetText = window.SmileWidgetText || {};
  window.SmileWidgetText['zh-CN'] = {
      close: '关闭', back: '返回', consentTitle: '连接您的数据', consentLead: '{company} 使用 Smile 核实您的工作和收入',
      consentPoints: ['您的登录信息绝不会分享给 {company}。', '由您决定连接哪些账户。', '您可以随时断开连接。'],
      continue: '继续', chooseProvider: '选择您工作或收入的来源', search: '搜索', all: '全部',
      types: { GIG: '零工平台', GOVERNMENT: '政府服务', EMPLOYER: '雇主', SYSTEM: '薪资与人事', CREDENTIAL: '证件' },
      upload: '改为上传文件', survey: '找不到您的雇主？', loginTitle: '登录 {provider}', username: '电子邮箱', phone: '手机号码',
      ssNumber: '社保号码', password: '密码', logIn: '登录', otherWays: '其他登录方式', optionsTitle: '选择登录方式', email: '电子邮箱',
      mfaTitle: '输入验证码', mfaLead: '{provider} 已向您的手机或邮箱发送验证码。', code: '验证码', verify: '验证',
      connectedTitle: '已连接！', connectedLead: '您的 {provider} 账户已连接。', done: '完成', connectAnother: '连接其他账户',
      statusTitle: '{provider} 账户', status: '状态：', disconnect: '断开连接', surveyTitle: '告诉我们您的雇主', employer: '雇主名称',
      submit: '提交', surveyThanks: '谢谢！我们已把 {employer} 转告给 {company}。', fileTypesTitle: '您想上传什么？',
      uploadTitle: '上传{type}', chooseFile: '文件（PDF、PNG、JPG 或 TIFF，最大 15 MB）', send: '上传', archiveDone: '已上传！',
      archiveLead: '我们正在读取您的文件。', viewUploads: '查看我的上传', uploadsTitle: '我的上传', delete: '删除', noUploads: '还没有上传。',
      errorTitle: '出错了', tryAgain: '重试', exit: '退出', working: '处理中…', expired: '会话已过期，正在重新连接…',
      securedBy: '由 Smile 提供安全保障', tooBig: '文件超过 15 MB。', pickFile: '请先选择文件。', dropHere: '将文件拖到这里，或', chooseOne: '选择文件',
      uploading: '正在上传… {pct}%',
      errorCode: '错误代码：{code}', resend: '重新发送验证码', codeResent: '我们已发送新的验证码。',
      triesLeft: '验证码不正确，您还可以尝试 {n} 次。', lastTry: '验证码不正确，您还可以尝试 1 次。',
      cancel: '取消', confirmDisconnect: '要断开您的 {provider} 账户吗？{company} 将不再收到它的更新。',
      disconnected: '您的 {provider} 账户已断开连接。', confirmDelete: '要删除这个上传吗？此操作无法撤销。',
      deleted: '上传已删除。', yourCompany: '该公司', providerTypes: '服务商类型',
      noMatch: '没有与“{text}”匹配的结果。', noMatchUpload: '请检查拼写、换一个类型，或改为上传文件。',
      noMatchSurvey: '请检查拼写、换一个类型，或在下方告诉我们您的雇主。',
      statuses: { CONNECTED: '已连接', AWAITING_MFA: '等待验证码', PENDING: '连接中', ERROR: '需要处理', REVOKED: '已断开',
        STARTED: '读取中', ANALYZED: '已读取', UNSUPPORTED: '无法读取' },
      fileTypes: { PAYSLIP: '工资单', SOCIAL_SECURITY: '社保记录', INCOME_TAX: '所得税申报表', EMPLOYMENT_CERTIFICATE: '在职证明',
        BANK_STATEMENT: '银行对账单' },
      errors: {
        ACCOUNT_DISABLED: '此账户已在 {provider} 被停用。请联系 {provider} 重新启用。',
        ACCOUNT_INACCESSIBLE: '{provider} 暂时不允许我们访问此账户。',
        ACCOUNT_INCOMPLETE: '此账户在 {provider} 尚未设置完成。请先完成设置，然后重试。',
        ACCOUNT_LOCKED: '此账户已在 {provider} 被锁定。请先在 {provider} 解锁，然后重试。',
        AUTH_REQUIRED: '请输入您的登录信息以继续。',
        EXPIRED_CREDENTIALS: '您的 {provider} 密码已过期。请先在 {provider} 重置，然后重试。',
        INVALID_ACCOUNT_TYPE: '无法连接这种类型的 {provider} 账户。',
        INVALID_AUTH: '无法登录 {provider}。请检查您的信息后重试。',
        INVALID_CREDENTIALS: '电子邮箱或密码不正确。请检查后重试。',
        INVALID_MFA: '验证码错误次数过多。',
        MFA_TIMEOUT: '未能及时输入验证码。',
        SERVICE_UNAVAILABLE: '{provider} 暂时无法使用。请几分钟后重试。',
        SYSTEM_ERROR: '我们这边出了问题。请几分钟后重试。',
        TOS_REQUIRED: '请先在 {provider} 接受服务条款，然后重试。',
        UNSUPPORTED_AUTH_TYPE: '暂不支持这种登录 {provider} 的方式。',
        UNSUPPORTED_MFA_METHOD: '暂不支持这种验证方式。',
        OTHER: '出了点问题。请几分钟后重试。'
      }
    };
})();
