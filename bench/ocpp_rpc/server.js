// Reference OCPP 1.6 central system for `python -m bench.gateway --compare`: a minimal
// strict ocpp-rpc server that stores nothing (no Kafka, no database). It answers the
// calls the load generator makes and prints "LISTENING <port>" once it accepts connections.
'use strict';
const { RPCServer } = require('ocpp-rpc');

const port = Number(process.argv[2] || 0);
const server = new RPCServer({ protocols: ['ocpp1.6'], strictMode: true });
let nextTransactionId = 1;

server.on('client', (client) => {
  const now = () => new Date().toISOString();
  client.handle('BootNotification', () => ({ status: 'Accepted', interval: 300, currentTime: now() }));
  client.handle('Heartbeat', () => ({ currentTime: now() }));
  client.handle('StatusNotification', () => ({}));
  client.handle('StartTransaction', () => ({
    transactionId: nextTransactionId++, idTagInfo: { status: 'Accepted' },
  }));
  client.handle('MeterValues', () => ({}));
  client.handle('StopTransaction', () => ({ idTagInfo: { status: 'Accepted' } }));
});

server.listen(port, '127.0.0.1').then((http) => {
  process.stdout.write(`LISTENING ${http.address().port}\n`);
});
process.on('SIGTERM', () => server.close({ force: true }).then(() => process.exit(0)));
