// Which metadata contexts an NBD_OPT_LIST/SET_META_CONTEXT selects, as qemu-nbd 7.2 answers
// (nbd/server.c nbd_negotiate_meta_queries): base:allocation, qemu:allocation-depth (with -A)
// and qemu:dirty-bitmap:NAME (with -B NAME). Queries outside these namespaces select nothing.
import { NBD_META_ID_ALLOCATION_DEPTH, NBD_META_ID_BASE_ALLOCATION, NBD_META_ID_DIRTY_BITMAP } from './constants.js'

/** What an export offers beyond base:allocation. */
export interface MetaOffer {
  allocationDepth: boolean
  bitmaps: readonly string[]
}

/** The contexts a client selected: the flags, and the id and name of each, in reply order. */
export interface MetaSelection {
  baseAllocation: boolean
  allocationDepth: boolean
  /** One entry per offered bitmap. */
  bitmaps: boolean[]
  /** Contexts in the order QEMU replies and answers block status: base, depth, bitmaps. */
  contexts: { id: number; name: string }[]
}

export const BASE_ALLOCATION = 'base:allocation'
export const ALLOCATION_DEPTH = 'qemu:allocation-depth'
export const DIRTY_BITMAP_PREFIX = 'qemu:dirty-bitmap:'

/**
 * Builds a selection one query at a time, so a client's query count costs no memory. `list` is
 * true for LIST_META_CONTEXT, where empty leaf names select everything in their namespace.
 */
export class MetaSelector {
  baseAllocation = false
  allocationDepth = false
  readonly bitmaps: boolean[]
  readonly #offer: MetaOffer
  readonly #list: boolean

  constructor(offer: MetaOffer, list: boolean) {
    this.#offer = offer
    this.#list = list
    this.bitmaps = offer.bitmaps.map(() => false)
  }

  /** LIST with no queries: every context the export has. */
  selectAll(): void {
    this.baseAllocation = true
    this.allocationDepth = this.#offer.allocationDepth
    this.bitmaps.fill(true)
  }

  /** One query (nbd_negotiate_meta_query); names in no known namespace select nothing. */
  add(query: string): void {
    const list = this.#list
    if (query.startsWith('base:')) {
      const leaf = query.slice('base:'.length)
      // nbd_meta_empty_or_pattern: the empty leaf lists (never sets) everything.
      if (leaf === 'allocation' || (leaf === '' && list)) this.baseAllocation = true
      return
    }
    if (!query.startsWith('qemu:')) return
    const leaf = query.slice('qemu:'.length)
    if (leaf === '') {
      if (list) {
        this.allocationDepth = this.#offer.allocationDepth
        this.bitmaps.fill(true)
      }
    } else if (leaf === 'allocation-depth') {
      this.allocationDepth = this.#offer.allocationDepth
    } else if (leaf.startsWith('dirty-bitmap:')) {
      const name = leaf.slice('dirty-bitmap:'.length)
      if (name === '') {
        if (list) this.bitmaps.fill(true)
      } else {
        const i = this.#offer.bitmaps.indexOf(name)
        if (i >= 0) this.bitmaps[i] = true
      }
    }
  }

  /** The selection, contexts in QEMU's reply order: base, depth, bitmaps. */
  finish(): MetaSelection {
    const contexts: { id: number; name: string }[] = []
    if (this.baseAllocation) contexts.push({ id: NBD_META_ID_BASE_ALLOCATION, name: BASE_ALLOCATION })
    if (this.allocationDepth) contexts.push({ id: NBD_META_ID_ALLOCATION_DEPTH, name: ALLOCATION_DEPTH })
    this.bitmaps.forEach((on, i) => {
      if (on) contexts.push({ id: NBD_META_ID_DIRTY_BITMAP + i, name: DIRTY_BITMAP_PREFIX + this.#offer.bitmaps[i]! })
    })
    return { baseAllocation: this.baseAllocation, allocationDepth: this.allocationDepth, bitmaps: [...this.bitmaps], contexts }
  }
}

/** Selects contexts for a whole query list at once (LIST with none selects all). */
export function selectMetaContexts(offer: MetaOffer, queries: readonly string[], list: boolean): MetaSelection {
  const selector = new MetaSelector(offer, list)
  if (list && queries.length === 0) selector.selectAll()
  for (const q of queries) selector.add(q)
  return selector.finish()
}
