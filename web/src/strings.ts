/**
 * Every string the app shows, in English and Chinese, from one table: the
 * language is the browser's (navigator.language), English when it is neither.
 */
const en = {
  appName: 'Warbler',
  loginTitle: 'Log in',
  user: 'User name',
  password: 'Password',
  logIn: 'Log in',
  loggingIn: 'Logging in…',
  logOut: 'Log out',
  badLogin: 'Wrong user name or password.',
  tooMany: 'Too many attempts from here; wait a minute and try again.',
  busy: 'The server is busy; try again shortly.',
  loginFailed: 'Could not log in',
  sessionOver: 'Your session has ended; log in again.',
  connecting: 'connecting…',
  connected: 'connected',
  offline: 'offline, reconnecting…',
  conversations: 'Conversations',
  newChat: 'Chat with user',
  open: 'Open',
  noConversations: 'No conversations yet.',
  back: 'Back',
  message: 'Message',
  send: 'Send',
  sending: 'sending…',
  notSent: 'not sent',
  loadingOlder: 'Loading older messages…',
  beginning: 'Start of the conversation',
  unread: (n: number) => `${n} unread`,
  you: 'You'
}

type Strings = typeof en

const zh: Strings = {
  appName: 'Warbler',
  loginTitle: '登录',
  user: '用户名',
  password: '密码',
  logIn: '登录',
  loggingIn: '正在登录…',
  logOut: '退出登录',
  badLogin: '用户名或密码错误。',
  tooMany: '尝试次数过多，请稍等一分钟再试。',
  busy: '服务器繁忙，请稍后再试。',
  loginFailed: '无法登录',
  sessionOver: '会话已结束，请重新登录。',
  connecting: '正在连接…',
  connected: '已连接',
  offline: '离线，正在重新连接…',
  conversations: '会话',
  newChat: '与用户聊天',
  open: '打开',
  noConversations: '还没有会话。',
  back: '返回',
  message: '消息',
  send: '发送',
  sending: '发送中…',
  notSent: '未发送',
  loadingOlder: '正在加载更早的消息…',
  beginning: '会话开始',
  unread: (n: number) => `${n} 条未读`,
  you: '我'
}

/** The strings of the browser's language. */
export function pickStrings (language: string): { lang: 'en' | 'zh', t: Strings } {
  return language.toLowerCase().startsWith('zh') ? { lang: 'zh', t: zh } : { lang: 'en', t: en }
}

export type { Strings }
