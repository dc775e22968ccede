// One line at the end of the run for the security suite: how many attacks were tried, how many
// were refused, and how many crashed what they hit. Each security test records what it tried;
// the line is printed by a root-level hook, so it comes after the last test of the whole run.
//
// `refused` means the target turned the attack down and kept serving (the test checks both);
// `crashed` means the target stopped serving or threw where it should have refused.

interface Tally {
  tried: number;
  refused: number;
  crashed: number;
  byArea: Map<string, { tried: number; refused: number; crashed: number }>;
}

const tally: Tally = { tried: 0, refused: 0, crashed: 0, byArea: new Map() };

export type AttackOutcome = 'refused' | 'crashed' | 'held-open';

/** Records one attack on `area` (e.g. `broker`, `update-server`) and what became of it. */
export function recordAttack(area: string, outcome: AttackOutcome, count = 1): void {
  const a = tally.byArea.get(area) ?? { tried: 0, refused: 0, crashed: 0 };
  a.tried += count;
  tally.tried += count;
  if (outcome === 'refused') {
    a.refused += count;
    tally.refused += count;
  }
  if (outcome === 'crashed') {
    a.crashed += count;
    tally.crashed += count;
  }
  tally.byArea.set(area, a);
}

export function attackSummary(): string {
  const areas = [...tally.byArea].map(([name, a]) => `${name} ${a.refused}/${a.tried}`).join(', ');
  return `security: ${tally.tried} attacks tried, ${tally.refused} refused, ${tally.crashed} crashes${areas ? ` (${areas})` : ''}`;
}

// Root-level: registered once, when the first security test file loads this module.
after(() => {
  if (tally.tried > 0) console.log(`\n  ${attackSummary()}\n`);
});
