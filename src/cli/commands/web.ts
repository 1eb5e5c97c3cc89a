// qimg web [--port N] [--bind ADDR] [IMG|URL]... — serves the inspector page (dist/web/) and the
// named images read-only (with the files of their backing chains) over HTTP with Range support,
// and prints a link per image; http(s) URLs are handed to the page as they are. Runs until
// SIGINT/SIGTERM.
import { ImageError } from '../../errors.js'
import { openImage } from '../../node/open.js'
import { filePath, startWebServer, webPageDir } from '../../node/web-server.js'
import { isHttpUrl } from '../../portable/url-host.js'
import { stringOption } from '../getopt.js'
import { parseArgs, type Command } from '../context.js'

/** The files a local image is read from: its own and those of its backing chain. */
async function chainFiles(image: string): Promise<string[]> {
  // As info opens it: an encrypted image needs no secret to name its files.
  const device = await openImage(image, { metadataOnly: true })
  try {
    return device.chain.map((layer) => layer.driver.storage.name)
  } finally {
    await device.close()
  }
}

export const web: Command = async (args, ctx) => {
  const parsed = parseArgs(args, [
    { long: 'port', value: true },
    { long: 'bind', value: true },
  ])
  const portText = stringOption(parsed, 'port') ?? '8080'
  const port = Number(portText)
  if (!/^\d+$/.test(portText) || port > 65535) throw new ImageError('INVALID_ARGUMENT', `Invalid port '${portText}' (0..65535)`)
  const bind = stringOption(parsed, 'bind') ?? '127.0.0.1'
  const pageDir = webPageDir()
  if (pageDir === undefined) throw new ImageError('UNSUPPORTED', 'the inspector page is not built (dist/web/ is missing: it is bundled by esbuild in npm run build)')
  const files: string[] = []
  const links: { name: string; url: string }[] = []
  for (const operand of parsed.operands) {
    if (isHttpUrl(operand)) links.push({ name: operand, url: operand })
    else {
      files.push(...await chainFiles(operand))
      links.push({ name: operand, url: filePath(operand) })
    }
  }
  const server = await startWebServer(pageDir, files, bind, port)
  const query = links.map((link) => 'open=' + encodeURIComponent(link.url)).join('&')
  ctx.out(`qimg web: the inspector at ${server.url}/${query ? '?' + query : ''}\n`)
  for (const link of links) ctx.out(`  ${link.name}: ${server.url}/?open=${encodeURIComponent(link.url)}\n`)
  ctx.out('Ctrl-C stops it.\n')
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
      resolve()
    }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
  })
  await server.close()
  return 0
}
