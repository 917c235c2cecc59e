// The same records two ways: `unbuffered` makes one write() per record
// (fs.writeSync), `corked` queues each burst on a corked stream and uncorks
// it on the next tick, so the burst leaves in one writev (_writev).
// Usage: node writer.js unbuffered|corked RECORDS
const fs = require('fs');
const [mode, total] = [process.argv[2], Number(process.argv[3])];
const record = Buffer.from('0123456789abcdefghi\n');
const fd = fs.openSync('/dev/null', 'w');
const stream = fs.createWriteStream(null, { fd });
let written = 0;
// 10 records every 2 ms: 5,000 a second.
const timer = setInterval(() => {
  if (mode === 'corked') stream.cork();
  for (let i = 0; i < 10 && written < total; i++, written++) {
    if (mode === 'corked') stream.write(record);
    else fs.writeSync(fd, record);
  }
  if (mode === 'corked') process.nextTick(() => stream.uncork());
  if (written >= total) {
    clearInterval(timer);
    stream.end();
  }
}, 2);
