import { describe, expect, it } from 'vitest';
import {
  chiSquareSurvival,
  chiSquareUniform,
  countsFor,
  errorTotal,
  logGamma,
  regularizedGammaQ,
} from '../../scripts/lib/traffic';

describe('chiSquareUniform', () => {
  it('is 0 with p = 1 for a perfectly even split', () => {
    const r = chiSquareUniform([100, 100, 100]);
    expect(r.statistic).toBe(0);
    expect(r.degreesOfFreedom).toBe(2);
    expect(r.pValue).toBe(1);
  });

  it('computes Pearson\'s statistic', () => {
    // expected 10 each: (5^2 + 0 + 5^2) / 10 = 5
    expect(chiSquareUniform([5, 10, 15]).statistic).toBeCloseTo(5, 12);
    // expected 25: (25 + 25 + 0 + 0) / 25 = 2
    expect(chiSquareUniform([20, 30, 25, 25]).statistic).toBeCloseTo(2, 12);
  });

  it('for k = 3 (df = 2) the p-value is exactly exp(-x/2)', () => {
    for (const counts of [
      [5, 10, 15],
      [33, 34, 33],
      [90, 5, 5],
      [1, 0, 0],
      [0, 0, 300],
      [101, 99, 100],
    ]) {
      const r = chiSquareUniform(counts);
      expect(r.pValue).toBeCloseTo(Math.exp(-r.statistic / 2), 14);
      expect(Math.abs(r.pValue - Math.exp(-r.statistic / 2))).toBeLessThanOrEqual(1e-15 + 1e-12 * Math.exp(-r.statistic / 2));
    }
  });

  it('flags a skewed distribution and accepts a fair one', () => {
    expect(chiSquareUniform([300, 0, 0]).pValue).toBeLessThan(1e-100);
    expect(chiSquareUniform([60, 20, 20]).pValue).toBeLessThan(1e-6);
    expect(chiSquareUniform([98, 105, 97]).pValue).toBeGreaterThan(0.5);
  });

  it('rejects meaningless input', () => {
    expect(() => chiSquareUniform([])).toThrow(RangeError);
    expect(() => chiSquareUniform([7])).toThrow(RangeError);
    expect(() => chiSquareUniform([0, 0, 0])).toThrow(RangeError);
    expect(() => chiSquareUniform([1, -1, 3])).toThrow(RangeError);
    expect(() => chiSquareUniform([1, NaN])).toThrow(RangeError);
  });
});

describe('chiSquareSurvival', () => {
  // Critical values (upper quantiles) from standard tables / scipy.stats.chi2.isf.
  const table: Array<[df: number, x: number, p: number]> = [
    [1, 3.841458820694124, 0.05],
    [1, 6.634896601021214, 0.01],
    [2, 5.991464547107979, 0.05],
    [3, 7.814727903251178, 0.05],
    [3, 11.344866730144373, 0.01],
    [4, 9.487729036781154, 0.05],
    [5, 11.070497693516351, 0.05],
    [7, 2.833106917815399, 0.9],
    [9, 21.665994333461924, 0.01],
    [10, 18.307038053275146, 0.05],
    [30, 43.77297182574219, 0.05],
    [100, 124.34211340400407, 0.05],
  ];
  it.each(table)('df=%d x=%f -> %f', (df, x, p) => {
    expect(chiSquareSurvival(x, df)).toBeCloseTo(p, 10);
  });

  it('matches closed forms: df=1 is erfc(sqrt(x/2)), df=4 is (1+x/2)e^(-x/2)', () => {
    // erfc(1) = 0.157299207050285..., so P(X1 >= 2) = erfc(1)
    expect(chiSquareSurvival(2, 1)).toBeCloseTo(0.15729920705028513, 13);
    for (const x of [0.1, 1, 3, 8, 20, 60]) {
      expect(chiSquareSurvival(x, 4)).toBeCloseTo((1 + x / 2) * Math.exp(-x / 2), 13);
      expect(chiSquareSurvival(x, 2)).toBeCloseTo(Math.exp(-x / 2), 14);
    }
  });

  it('matches the closed form for even df: e^(-x/2) * sum_{j<df/2} (x/2)^j / j!', () => {
    const closed = (df: number, x: number): number => {
      let term = 1;
      let sum = 1;
      for (let j = 1; j < df / 2; j++) {
        term *= x / 2 / j;
        sum += term;
      }
      return Math.exp(-x / 2) * sum;
    };
    for (const df of [2, 6, 10, 20, 50])
      for (const x of [0.3, 2, 5, 9.9, 15, 40, 90]) {
        const want = closed(df, x);
        expect(Math.abs(chiSquareSurvival(x, df) - want)).toBeLessThan(1e-12 * Math.max(1, want));
      }
  });

  it('is 1 at 0, decreasing, and tends to 0', () => {
    expect(chiSquareSurvival(0, 3)).toBe(1);
    let prev = 1;
    for (let x = 0.25; x < 80; x += 0.25) {
      const p = chiSquareSurvival(x, 5);
      expect(p).toBeLessThanOrEqual(prev);
      expect(p).toBeGreaterThanOrEqual(0);
      prev = p;
    }
    expect(chiSquareSurvival(1000, 5)).toBeLessThan(1e-200);
  });
});

describe('gamma helpers', () => {
  it('logGamma matches factorials and Γ(1/2) = sqrt(π)', () => {
    expect(logGamma(1)).toBeCloseTo(0, 13);
    expect(logGamma(5)).toBeCloseTo(Math.log(24), 13);
    expect(logGamma(11)).toBeCloseTo(Math.log(3628800), 12);
    expect(logGamma(0.5)).toBeCloseTo(0.5 * Math.log(Math.PI), 13);
    expect(logGamma(0.1)).toBeCloseTo(2.252712651734206, 12);
  });

  it('Q(1, x) = e^-x on both sides of the series/continued-fraction switch', () => {
    for (const x of [0.01, 0.5, 1.9, 2, 2.1, 10, 50]) expect(regularizedGammaQ(1, x)).toBeCloseTo(Math.exp(-x), 14);
    expect(regularizedGammaQ(3, 0)).toBe(1);
    expect(regularizedGammaQ(3, Infinity)).toBe(0);
  });
});

describe('result helpers', () => {
  it('countsFor keeps order and fills zeros; errorTotal sums', () => {
    const r = { counts: { be2: 4, be0: 1 }, errors: { ECONNREFUSED: 2, ETIMEDOUT: 3 } };
    expect(countsFor(r, ['be0', 'be1', 'be2'])).toEqual([1, 0, 4]);
    expect(errorTotal(r)).toBe(5);
    expect(errorTotal({ errors: {} })).toBe(0);
  });
});
