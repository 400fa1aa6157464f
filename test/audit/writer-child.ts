/**
 * A separate process writing access log lines, for the test that several
 * worker processes share one file: node writer-child.js FILE COUNT TAG PAD.
 * Each line's request id is TAG-SEQ, so the parent can check every line
 * arrived exactly once and whole.
 */
import { AccessLog } from '../../src/audit/access-log.js';
import { sampleRecord } from './records.js';

const [file = 'stdout', countText = '1000', tag = 'w', padText = '0'] = process.argv.slice(2);
const count = Number(countText);
const pad = 'x'.repeat(Number(padText));
const log = AccessLog.open(file, { onError: (err) => process.stderr.write(`access log error: ${err.message}\n`) });
const rec = sampleRecord({ headers: [{ name: 'user-agent', value: `load/${tag} ${pad}` }] });

let seq = 0;
function batch(): void {
  // Batches with a yield between them, so the two processes' writes interleave in time.
  for (let i = 0; i < 250 && seq < count; i++, seq++) {
    rec.requestId = `${tag}-${seq}`;
    log.write(rec, []);
  }
  if (seq < count) setImmediate(batch);
  else
    void log.close().then(() => {
      if (log.dropped > 0) process.stderr.write(`dropped ${log.dropped}\n`);
      process.exitCode = log.dropped > 0 ? 1 : 0;
    });
}
batch();
