/** The vocabulary of the generated chat corpus: languages and their frequent words, emoji, user names, link domains. */

export type Lang = 'en' | 'es' | 'de' | 'fr' | 'ru' | 'zh' | 'ja'
export const LANGS: ReadonlyArray<readonly [Lang, number]> = [['en', 45], ['es', 10], ['de', 8], ['fr', 7], ['ru', 5], ['zh', 18], ['ja', 7]]

// Frequent words first (zipf picks them most often).
export const WORDS: Record<Lang, string[]> = {
  en: ('I you the to a it is and that what for in of we on me my have do be this just so no not are was at can ' +
    'ok but with yeah get be know if like will be here there how up all about one think now go going good time ' +
    'when see lol out then did your got call today tomorrow sure need want back work still more let me thanks ' +
    'really right home come an tonight later meeting lunch after before maybe send sent message phone server ' +
    'update fixed broken build test deploy release branch merge review issue bug log error again sorry hey ' +
    'hi guys team week weekend coffee dinner train late minutes almost ready done check look nice great cool ' +
    'awesome wait why where who which something anything everyone people bro mom dad kids school pick ' +
    'picture photo video link file download restart router wifi network battery charger pi raspberry ' +
    'birthday party beer movie game match score rain weather cold hot tired sleep morning night').split(' '),
  es: ('que de no a la el y en lo es un por me se los con para una te mi pero si ya todo bien eso está más hay ' +
    'como muy sí hoy mañana vale ok gracias jaja jajaja bueno casa trabajo ahora luego tengo tienes vamos ' +
    'nos vemos dónde cuándo porque también nada algo alguien hora tarde noche reunión comida cena café ' +
    'llego salgo mensaje teléfono foto video fin semana fiesta cumpleaños perdón claro genial perfecto').split(' '),
  de: ('ich du das ist nicht und die der ja es zu in mit ein was wir auf hast bin mal noch so aber schon ' +
    'auch heute morgen gleich später jetzt okay danke bitte gut super genau klar kein keine komme gehe ' +
    'treffen essen kaffee bahn verspätung arbeit hause wochenende nachricht handy foto video server update ' +
    'fehler läuft wieder kurz minuten abend schön leider vielleicht wann wo warum').split(' '),
  fr: ('je de pas le la que tu et à les un est ce en on il une des pour ça suis mais oui non bien ai fait ' +
    'avec moi toi nous vous tout plus aujourd\'hui demain ce soir là ici merci ok super génial d\'accord ' +
    'bisous travail maison réunion déjeuner dîner café train retard minutes arrive message téléphone photo ' +
    'vidéo week-end anniversaire désolé peut-être quand où pourquoi').split(' '),
  ru: ('я не что ты в и на это да как а так ну у меня все мы он она нет уже еще там тут сегодня завтра ' +
    'сейчас потом хорошо ладно спасибо пожалуйста привет пока понял ок давай можно нужно будет было ' +
    'работа дома встреча обед ужин кофе поезд опаздываю минут сообщение телефон фото видео сервер ' +
    'обновление ошибка выходные день рождения извини где когда почему').split(' '),
  zh: ('我 你 的 了 是 不 在 有 这个 好的 我们 一下 什么 今天 明天 没有 可以 就 也 还 他 她 哈哈 哈哈哈 ' +
    '知道 觉得 现在 晚上 早上 时间 一起 吃饭 工作 公司 开会 问题 事情 朋友 喜欢 谢谢 没问题 真的 已经 还是 ' +
    '但是 因为 所以 如果 就是 还有 电脑 手机 服务器 代码 测试 版本 更新 下载 发送 消息 群里 周末 电影 ' +
    '咖啡 地铁 回家 路上 到了 等一下 马上 稍等 辛苦了 加油 晚安 早安 生日快乐 收到 怎么 为什么 哪里 ' +
    '那个 应该 需要 看看 照片 视频 链接 文件 重启 路由器 网络 电池 树莓派 天气 下雨 好冷 好累 睡觉').split(' '),
  ja: ('の は て を に が た です ます よ ね ありがとう よろしく お願いします 今日 明日 昨日 時間 ' +
    '大丈夫 了解 けど から まで 会議 仕事 電車 遅れ 帰る 行く 来る 食べる ちょっと すごい いいね 本当 ' +
    '何 どこ いつ なんで 写真 動画 サーバー 更新 エラー 再起動 週末 ランチ コーヒー 今から 着いた ' +
    'おはよう おやすみ お疲れ様 ごめん わかった 楽しみ 天気 雨 寒い 眠い').split(' ')
}
export const CANNED: Record<Lang, string[]> = {
  en: ['ok', 'lol', 'yes', 'no', 'thx!', 'omw', 'sure', 'k', 'haha', 'nice', 'see you', 'on my way', 'brb', 'np', 'good night', 'sounds good', 'ok 👍', 'lmao'],
  es: ['vale', 'jaja', 'sí', 'ok', 'gracias!', 'voy', 'dale', 'buenas noches', 'perfecto'],
  de: ['ok', 'ja', 'nein', 'danke!', 'bin unterwegs', 'passt', 'gute Nacht', 'haha', 'alles klar'],
  fr: ['ok', 'oui', 'merci!', 'mdr', 'j\'arrive', 'bonne nuit', 'ça marche', 'd\'accord'],
  ru: ['ок', 'да', 'нет', 'спасибо!', 'хаха', 'иду', 'спокойной ночи', 'понял'],
  zh: ['好的', '收到', '哈哈哈', '嗯嗯', '谢谢！', '马上到', '晚安', '没问题', '好滴', 'OK'],
  ja: ['了解', 'はい', 'ありがとう！', 'www', 'いま行く', 'おやすみ', 'おけ', 'わかった']
}
export const EMOJI = ['😂', '👍', '❤️', '😊', '🙏', '😭', '😍', '🔥', '🎉', '😅', '🤔', '👀', '✅', '😴', '🙈', '🚀', '☕', '🍕', '💯', '😀',
  '🤣', '👍🏽', '👨‍👩‍👧', '🇪🇸', '🥳', '😬', '🤷‍♂️', '🙌', '💪', '😎']
export const USERS = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'li.wei', 'zhang_san', 'wang.fang', 'yuki', 'kenji', 'maria', 'jose', 'lucia',
  'hans', 'greta', 'pierre', 'amelie', 'olga', 'dmitri', 'sam', 'priya', 'tom', 'nina', 'omar', 'pi_kitchen', 'grandma', 'jonas', 'ines', 'mei']
export const DOMAINS = ['github.com', 'www.youtube.com', 'docs.google.com', 'en.wikipedia.org', 'www.amazon.de', 'twitter.com', 'news.ycombinator.com',
  'www.reddit.com', 'maps.app.goo.gl', 'stackoverflow.com', 'www.bilibili.com', 'zhuanlan.zhihu.com', 'open.spotify.com', 'www.nytimes.com', 'drive.google.com']
