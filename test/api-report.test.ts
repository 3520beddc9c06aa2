/**
 * The committed API reports (etc/callmood.api.md for `callmood`, etc/lab.api.md for `callmood/lab`) say what the
 * code exports: a change to the public API shows in review as a change to a report. After changing the API on
 * purpose, run `npm run api -- --local` and commit the reports.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkApiReports } from '../scripts/api-report.js';

test('etc/*.api.md match the exports of src/index.ts and src/lab.ts', { timeout: 120_000 }, () => {
  const results = checkApiReports();
  for (const r of results) {
    assert.deepEqual(r.messages, [], `API Extractor's errors and warnings for ${r.report}`);
    assert.equal(r.changed, false, `${r.report} differs from the code: run npm run api -- --local and commit it`);
  }
  assert.equal(results.length, 2);
});
