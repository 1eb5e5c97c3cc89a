// qimg info [-f FMT] [--output=human|json] [--backing-chain] [-U] IMG
import { describeLayer } from '../../node/open.js'
import type { ImageInfo } from '../../format/info.js'
import { flag } from '../getopt.js'
import { formatInfoHuman } from '../human.js'
import { infoToQValue } from '../info-json.js'
import { toQemuJson } from '../qjson.js'
import { oneOperand, openOperand, outputFormat, parseArgs, type Command } from '../context.js'

export const info: Command = async (args, ctx) => {
  const parsed = parseArgs(args, [
    { long: 'output', value: true },
    { long: 'backing-chain', value: false },
  ])
  const output = outputFormat(parsed)
  const operand = oneOperand(parsed)
  const chain = flag(parsed, 'backing-chain')
  const infos: ImageInfo[] = []
  // qemu-img info opens the image without its backing file unless asked for the chain.
  const device = await openOperand(operand, parsed, { fileReferences: chain ? 'follow' : 'ignore', metadataOnly: true })
  try {
    for (const layer of device.chain) infos.push(await describeLayer(layer))
  } finally {
    await device.close()
  }
  if (output === 'json') {
    const value = chain ? infos.map(infoToQValue) : infoToQValue(infos[0]!)
    ctx.out(toQemuJson(value) + '\n')
  } else {
    ctx.out(infos.map(formatInfoHuman).join('\n'))
  }
  return 0
}
