/**
 * The API reports of the two entry points, etc/callmood.api.md (src/index.ts) and etc/lab.api.md (src/lab.ts), made
 * by API Extractor from declarations that tsc writes into a scratch folder (.tmp/api).
 *
 *   npm run api              build, and fail if a committed report differs from the code (or API Extractor warns)
 *   npm run api -- --local   build, and rewrite the reports in etc/ (commit them with the change to the API)
 */
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Extractor, ExtractorConfig, type ExtractorMessage } from '@microsoft/api-extractor';

const root = fileURLToPath(new URL('../', import.meta.url));

/** The entry points: API Extractor config file and the declaration file tsc writes for it. */
export const API_ENTRIES = [
  { config: 'api-extractor.json', entry: 'src/index.d.ts', report: 'etc/callmood.api.md' },
  { config: 'api-extractor.lab.json', entry: 'src/lab.d.ts', report: 'etc/lab.api.md' },
] as const;

/** What one entry point's check found. */
export interface ApiReportResult {
  report: string;
  /** The report in etc/ differs from the code (with `local`, it has been rewritten). */
  changed: boolean;
  /** API Extractor's errors and warnings, one line each. */
  messages: string[];
}

/**
 * Builds the declarations of src/ with tsc into a scratch folder and runs API Extractor on each entry point; with
 * `local`, rewrites the reports in etc/, else leaves them and reports differences.
 */
export function checkApiReports(opts: { local?: boolean } = {}): ApiReportResult[] {
  // Inside the project (.tmp/ is ignored by git): API Extractor writes some locations into the report, and a path
  // under the project folder is written relative to it, the same on every machine.
  const scratch = join(root, '.tmp', 'api');
  rmSync(scratch, { recursive: true, force: true });
  try {
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    const dts = join(scratch, 'dts');
    execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.api.json'), '--outDir', dts], { cwd: root, stdio: 'inherit' });
    return API_ENTRIES.map(({ config, entry, report }) => {
      const path = join(root, config);
      const configObject = ExtractorConfig.loadFile(path);
      configObject.mainEntryPointFilePath = join(dts, entry);
      configObject.apiReport = { ...configObject.apiReport!, enabled: true, reportTempFolder: join(scratch, 'report') };
      const prepared = ExtractorConfig.prepare({ configObject, configObjectFullPath: path, packageJsonFullPath: join(root, 'package.json') });
      const messages: string[] = [];
      const result = Extractor.invoke(prepared, {
        localBuild: opts.local ?? false,
        messageCallback: (m: ExtractorMessage) => {
          // console-* messages only say what was done with the report files; `changed` carries that.
          if ((m.logLevel === 'error' || m.logLevel === 'warning') && !String(m.messageId).startsWith('console-')) messages.push(`${m.logLevel}: ${m.formatMessageWithLocation(root)}`);
          m.handled = true;
        },
      });
      return { report, changed: result.apiReportChanged, messages };
    });
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const local = process.argv.includes('--local');
  let failed = false;
  for (const r of checkApiReports({ local })) {
    for (const m of r.messages) process.stderr.write(`${r.report}: ${m}\n`);
    if (r.changed) process.stdout.write(local ? `${r.report}: updated\n` : `${r.report}: differs from the code; run npm run api -- --local and commit it\n`);
    else process.stdout.write(`${r.report}: up to date\n`);
    failed ||= r.messages.length > 0 || (r.changed && !local);
  }
  process.exitCode = failed ? 1 : 0;
}
