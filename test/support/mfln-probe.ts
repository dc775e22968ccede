import { randomBytes } from 'node:crypto';
import * as net from 'node:net';

// What BearSSL's `WiFiClientSecure::probeMaxFragmentLength(ip, port, len)` (esp8266/Arduino
// libraries/ESP8266WiFi/src/WiFiClientSecureBearSSL.cpp) decides, done the same way: a plain TCP
// connection, one TLS 1.2 ClientHello with the max_fragment_length extension (RFC 6066 section
// 4), then the first record is read. The probe says yes only when that record is a TLS 1.2
// handshake record holding exactly one ServerHello (its length equal to the record's), of
// version 1.2, whose extensions echo the same max_fragment_length value; anything else is no.
// Then it aborts the connection.

const MFL_CODE: Record<number, number> = { 512: 1, 1024: 2, 2048: 3, 4096: 4 };

const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);
const extension = (type: number, body: Buffer): Buffer => Buffer.concat([u16(type), u16(body.length), body]);

function clientHello(code: number, serverName: string): Buffer {
  const name = Buffer.from(serverName);
  const extensions = Buffer.concat([
    extension(0x0000, Buffer.concat([u16(name.length + 3), Buffer.from([0]), u16(name.length), name])),
    extension(0x0001, Buffer.from([code])),
    // secp256r1, x25519; uncompressed points; RSA PKCS#1 / PSS and ECDSA with SHA-256.
    extension(0x000a, Buffer.concat([u16(4), u16(0x0017), u16(0x001d)])),
    extension(0x000b, Buffer.from([1, 0])),
    extension(0x000d, Buffer.concat([u16(6), u16(0x0401), u16(0x0804), u16(0x0403)])),
  ]);
  // ECDHE-RSA/ECDSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-SHA256, RSA-AES128-GCM-SHA256.
  const suites = Buffer.concat([u16(0xc02f), u16(0xc02b), u16(0xc027), u16(0x009c)]);
  const body = Buffer.concat([Buffer.from([3, 3]), randomBytes(32), Buffer.from([0]), u16(suites.length), suites, Buffer.from([1, 0]), u16(extensions.length), extensions]);
  const handshake = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]);
  return Buffer.concat([Buffer.from([0x16, 3, 1]), u16(handshake.length), handshake]);
}

/** The probe's answer from the first record the server sent. */
function acknowledges(record: Buffer, code: number): boolean {
  if (record.length < 5 || record[0] !== 0x16 || record[1] !== 3 || record[2] !== 3) return false;
  const fragment = record.subarray(5, 5 + record.readUInt16BE(3));
  if (fragment.length < 4 || fragment[0] !== 2 || fragment.readUIntBE(1, 3) !== fragment.length - 4) return false;
  const hello = fragment.subarray(4);
  if (hello[0] !== 3 || hello[1] !== 3) return false;
  let at = 2 + 32;
  at += 1 + hello[at]; // session id
  at += 2 + 1; // cipher suite, compression
  if (at + 2 > hello.length) return false;
  const end = at + 2 + hello.readUInt16BE(at);
  for (at += 2; at + 4 <= end; ) {
    const type = hello.readUInt16BE(at);
    const len = hello.readUInt16BE(at + 2);
    if (type === 0x0001) return len === 1 && hello[at + 4] === code;
    at += 4 + len;
  }
  return false;
}

/** Whether the server at 127.0.0.1:`port` acknowledges max_fragment_length `length`, as BearSSL's probe judges it. */
export function probeMaxFragmentLength(port: number, length: 512 | 1024 | 2048 | 4096, serverName = 'localhost'): Promise<boolean> {
  const code = MFL_CODE[length];
  return new Promise((resolve) => {
    let data = Buffer.alloc(0);
    let done = false;
    const finish = (answer: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const socket = net.connect(port, '127.0.0.1', () => socket.write(clientHello(code, serverName)));
    const timer = setTimeout(() => finish(false), 5_000);
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      if (data.length >= 5 && data.length >= 5 + data.readUInt16BE(3)) finish(acknowledges(data, code));
    });
    socket.on('error', () => finish(false));
    socket.on('close', () => finish(acknowledges(data, code)));
  });
}
