// The luks format module on memory: round trips, probing, hostile headers.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryStorage } from '../../src/io/memory.js'
import { nodeCrypto } from '../../src/node/crypto.js'
import { isImageError } from '../../src/errors.js'
import { luksModule } from '../../src/luks/module.js'
import { LuksImage } from '../../src/luks/image.js'
import { formatSpecificToQValue } from '../../src/cli/info-json.js'

const secret = new TextEncoder().encode('abc')
const context = (writable: boolean, pass = secret) => ({ writable, crypto: nodeCrypto, secret: async () => pass, metadataOnly: false })

async function newImage(size = 65536): Promise<MemoryStorage> {
  const storage = new MemoryStorage(new Uint8Array(0), 'm.luks')
  await luksModule.create!({ storage, size, options: new Map([['iter-time', '0']]), secret, crypto: nodeCrypto, compressors: undefined })
  return storage
}

describe('luks module', () => {
  it('creates an image that probes as luks, reads back what was written', async () => {
    const storage = await newImage()
    const head = await storage.read(0, 2048)
    assert.equal(luksModule.probe!(head, await storage.size(), 'm.luks'), 1000)
    assert.equal(await storage.size(), 2068480 + 65536)
    const image = await LuksImage.open(storage, context(true))
    assert.equal(image.virtualSize, 65536)
    const data = Uint8Array.from({ length: 3000 }, (_, i) => i & 0xff)
    await image.write(700, data, async () => new Uint8Array())
    await image.writeZeroes(10000, 1000)
    assert.deepEqual(await image.readEncoded(700, 3000), data)
    assert.deepEqual(await image.readEncoded(10000, 1000), new Uint8Array(1000))
    // Stored encrypted.
    const raw = await storage.read(2068480 + 700, 3000)
    assert.notDeepEqual(raw, data)
    const info = await image.info()
    assert.equal(info.encrypted, true)
    assert.equal(info.formatSpecific?.type, 'luks')
    const q = formatSpecificToQValue(info.formatSpecific!) as Record<string, unknown>
    assert.equal(q['payload-offset'], 2068480)
    assert.equal(q['cipher-alg'], 'aes-256')
    await image.resize(100000, { preallocation: 'off' })
    assert.equal(await storage.size(), 2068480 + 100000)
    assert.equal(image.virtualSize, 100352)
  })

  it('refuses a wrong passphrase and a missing one with QEMU\'s words', async () => {
    const storage = await newImage()
    await assert.rejects(LuksImage.open(storage, context(false, new TextEncoder().encode('nope'))),
      (e) => isImageError(e, 'BAD_KEY') && /Invalid password, cannot unlock any keyslot/.test(e.message))
    await assert.rejects(LuksImage.open(storage, { ...context(false), secret: undefined }),
      (e) => isImageError(e, 'BAD_KEY') && e.qemuText === "Could not open 'm.luks': Parameter 'key-secret' is required for cipher")
    // info opens without the secret.
    const image = await LuksImage.open(storage, { ...context(false), secret: undefined, metadataOnly: true })
    assert.equal(image.virtualSize, 65536)
  })

  it('refuses hostile headers', async () => {
    const good = await newImage()
    const bytes = await good.read(0, 2068480 + 65536)
    const variant = async (edit: (b: Uint8Array, v: DataView) => void, length = bytes.length) => {
      const copy = bytes.slice(0, length)
      edit(copy, new DataView(copy.buffer))
      const s = new MemoryStorage(new Uint8Array(0), 'h.luks')
      await s.write(0, copy)
      return s
    }
    // Truncated header.
    await assert.rejects(LuksImage.open(await variant(() => undefined, 300), context(false)),
      (e) => isImageError(e, 'BAD_KEY') && /too short for a LUKS header/.test(e.message))
    // Key slot past the payload (and the end of the file).
    await assert.rejects(LuksImage.open(await variant((_, v) => v.setUint32(208 + 40, 0x7fff_0000)), context(false)),
      (e) => isImageError(e, 'BAD_KEY') && /Keyslot 0 is overlapping with the encrypted payload/.test(e.message))
    // Payload offset past the end of the file.
    await assert.rejects(LuksImage.open(await variant((_, v) => v.setUint32(104, 0xffff_ffff)), context(false)),
      (e) => isImageError(e, 'CORRUPT') && /payload offset .* past the end of the file/.test(e.message))
    // Absurd iteration count: refused before any PBKDF2 runs.
    await assert.rejects(LuksImage.open(await variant((_, v) => v.setUint32(208 + 4, 0xffff_ffff)), context(false)),
      (e) => isImageError(e, 'BAD_KEY') && /iterations/.test(e.message))
    await assert.rejects(LuksImage.open(await variant((_, v) => v.setUint32(164, 0xffff_ffff)), context(false)),
      (e) => isImageError(e, 'BAD_KEY') && /iterations/.test(e.message))
    // Bad magic / version does not probe.
    const bad = await variant((b) => { b[7] = 2 })
    assert.equal(luksModule.probe!(await bad.read(0, 2048), 0, 'h'), 0)
  })
})
