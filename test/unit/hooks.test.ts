import { describe, expect, it } from "vitest"
import { type Episode, noEpisode, step } from "../../src/hooks/hooks.js"

/** Feeds one observation a second; returns the seconds at which the command fired. */
const firings = (states: ReadonlyArray<boolean>, afterMs: number) => {
  let episode: Episode = noEpisode
  const fired: Array<number> = []
  states.forEach((active, second) => {
    const r = step(episode, active, second * 1000, afterMs)
    episode = r.next
    if (r.fire) fired.push(second)
  })
  return fired
}

describe("hook episodes", () => {
  it("fire once, DURATION into a spell, and again only in a new spell", () => {
    const on = (n: number) => Array<boolean>(n).fill(true)
    const off = (n: number) => Array<boolean>(n).fill(false)
    expect(firings([...on(10)], 3000)).toEqual([3])
    expect(firings([...on(5), ...off(2), ...on(5)], 3000)).toEqual([3, 10])
    // A spell shorter than DURATION fires nothing.
    expect(firings([...on(2), ...off(1), ...on(2), ...off(5)], 3000)).toEqual([])
  })
})
