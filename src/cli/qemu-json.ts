// QEMU's JSON dialect (qobject/json-lexer.c, json-parser.c) for json: file names: standard JSON
// plus 'single-quoted' strings, with QEMU's error messages ("JSON parse error, premature EOI").
import { ImageError } from '../errors.js'

type Token = { kind: 'punct' | 'string' | 'number' | 'keyword'; text: string; value?: string | number }

function fail(message: string): never {
  throw new ImageError('INVALID_ARGUMENT', message)
}

const ESCAPES: Record<string, string> = { '"': '"', "'": "'", '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' }

/** json-lexer.c: a stray character ends the message with "stray '…'". */
function tokenize(text: string): Token[] {
  const tokens: Token[] = []
  let i = 0
  while (i < text.length) {
    const c = text[i]!
    if (' \t\n\r'.includes(c)) {
      i++
    } else if ('{}[]:,'.includes(c)) {
      tokens.push({ kind: 'punct', text: c })
      i++
    } else if (c === '"' || c === "'") {
      let value = ''
      let j = i + 1
      for (; j < text.length && text[j] !== c; j++) {
        if (text[j] === '\\') {
          const e = text[++j] ?? ''
          if (e === 'u') {
            const hex = text.slice(j + 1, j + 5)
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('JSON parse error, invalid escape sequence in string')
            value += String.fromCharCode(parseInt(hex, 16))
            j += 4
          } else if (ESCAPES[e] !== undefined) {
            value += ESCAPES[e]
          } else {
            fail('JSON parse error, invalid escape sequence in string')
          }
        } else {
          value += text[j]
        }
      }
      if (j >= text.length) fail('JSON parse error, premature EOI')
      tokens.push({ kind: 'string', text: text.slice(i, j + 1), value })
      i = j + 1
    } else {
      const word = /^(-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?|[a-z]+)/.exec(text.slice(i))
      if (!word) fail(`JSON parse error, stray '${c}'`)
      const isNumber = /^[-\d]/.test(word[0])
      tokens.push(isNumber ? { kind: 'number', text: word[0], value: Number(word[0]) } : { kind: 'keyword', text: word[0] })
      i += word[0].length
    }
  }
  return tokens
}

/** Parses one JSON value the way qobject_from_json does. */
export function parseQemuJson(text: string): unknown {
  const tokens = tokenize(text)
  let at = 0
  const peek = (): Token | undefined => tokens[at]
  const next = (): Token => tokens[at++] ?? fail('JSON parse error, premature EOI')
  const value = (): unknown => {
    const token = peek() ?? fail('JSON parse error, premature EOI')
    if (token.text === '{') return object()
    if (token.text === '[') return array()
    at++
    if (token.kind === 'string' || token.kind === 'number') return token.value
    if (token.kind === 'keyword') {
      if (token.text === 'true') return true
      if (token.text === 'false') return false
      if (token.text === 'null') return null
      fail(`JSON parse error, invalid keyword '${token.text}'`)
    }
    return fail('JSON parse error, expecting value')
  }
  const object = (): Record<string, unknown> => {
    next()
    const result: Record<string, unknown> = {}
    if (peek()?.text === '}') {
      at++
      return result
    }
    for (;;) {
      const key = peek() ?? fail('JSON parse error, premature EOI')
      const keyValue = value()
      if (key.kind !== 'string') fail('JSON parse error, key is not a string in object')
      if (next().text !== ':') fail('JSON parse error, missing : in object pair')
      const item = value()
      if (Object.hasOwn(result, keyValue as string)) fail('JSON parse error, duplicate key')
      result[keyValue as string] = item
      const separator = next()
      if (separator.text === '}') return result
      if (separator.text !== ',') fail('JSON parse error, expected separator in dict')
    }
  }
  const array = (): unknown[] => {
    next()
    const result: unknown[] = []
    if (peek()?.text === ']') {
      at++
      return result
    }
    for (;;) {
      result.push(value())
      const separator = next()
      if (separator.text === ']') return result
      if (separator.text !== ',') fail('JSON parse error, expected separator in list')
    }
  }
  if (tokens.length === 0) fail('Expecting a JSON value')
  const result = value()
  if (at < tokens.length) fail('Expecting at most one JSON value')
  return result
}
