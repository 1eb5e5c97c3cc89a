// qimg map [-f FMT] [--output=human|json] [-s OFFSET] [-l LENGTH] [-U] IMG
import { formatMapHuman, formatMapJson, mapImage } from '../../commands/map.js'
import { stringOption } from '../getopt.js'
import { parseSize } from '../size.js'
import { oneOperand, openOperand, outputFormat, parseArgs, type Command } from '../context.js'

export const map: Command = async (args, ctx) => {
  const parsed = parseArgs(args, [
    { long: 'output', value: true },
    { short: 's', long: 'start-offset', value: true, key: 'start' },
    { short: 'l', long: 'max-length', value: true, key: 'length' },
  ])
  const output = outputFormat(parsed)
  const operand = oneOperand(parsed)
  const startText = stringOption(parsed, 'start')
  const lengthText = stringOption(parsed, 'length')
  const start = startText === undefined ? 0 : parseSize(startText)
  const length = lengthText === undefined ? Infinity : parseSize(lengthText)
  const device = await openOperand(operand, parsed)
  try {
    const entries = await mapImage(device, start, length)
    if (output === 'json') ctx.out(formatMapJson(entries))
    else formatMapHuman(entries, (text) => ctx.out(text))
  } finally {
    await device.close()
  }
  return 0
}
