// A map that keeps at most `max` entries: setting one past that lets go of
// the entry set longest ago (setting an entry again makes it the newest).
// Remembered verdicts on objects (damaged shard versions, BigFile versions
// checked whole) are kept this way, bounded whatever a client asks for.

export class RecentMap<K, V> {
  private readonly map = new Map<K, V>()

  constructor(private readonly max: number) {}

  get(key: K): V | undefined {
    return this.map.get(key)
  }

  /** Sets `key` (as the newest), letting the oldest go past `max` (a Map keeps the order keys were set in). */
  set(key: K, value: V): void {
    this.map.delete(key)
    this.map.set(key, value)
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value!)
  }

  delete(key: K): void {
    this.map.delete(key)
  }
}
