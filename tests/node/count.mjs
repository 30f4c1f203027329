// What TypeScript's @mcap/core reads in an MCAP file, as JSON on stdout: per topic, the
// message count, the channel's message encoding and its schema (name, encoding), through
// both of its readers: the indexed reader (summary, chunk indexes, message indexes) and the
// stream reader (every record in file order). CRCs are validated by both; zstd chunks are
// decompressed with fzstd. Attachment and metadata names, and the first and last log time
// (ns, as strings). Used by tests/record/test_mcap_node.py: node count.mjs FILE.mcap
import { open, readFile } from "node:fs/promises";
import { McapIndexedReader, McapStreamReader } from "@mcap/core";
import { decompress } from "fzstd";

const decompressHandlers = {
  zstd: (buffer, decompressedSize) => decompress(buffer, new Uint8Array(Number(decompressedSize))),
};

async function indexed(path) {
  const handle = await open(path, "r");
  try {
    const readable = {
      size: async () => BigInt((await handle.stat()).size),
      read: async (offset, size) => {
        const buffer = new Uint8Array(Number(size));
        await handle.read(buffer, 0, Number(size), Number(offset));
        return buffer;
      },
    };
    const reader = await McapIndexedReader.Initialize({ readable, decompressHandlers });
    const topics = {};
    let first = null;
    let last = null;
    for await (const message of reader.readMessages({ validateCrcs: true })) {
      const channel = reader.channelsById.get(message.channelId);
      const schema = reader.schemasById.get(channel.schemaId);
      const row = (topics[channel.topic] ??= {
        messages: 0,
        message_encoding: channel.messageEncoding,
        schema: schema ? schema.name : "",
        schema_encoding: schema ? schema.encoding : "",
      });
      row.messages += 1;
      if (first === null || message.logTime < first) first = message.logTime;
      if (last === null || message.logTime > last) last = message.logTime;
    }
    const attachments = [];
    for await (const attachment of reader.readAttachments({ validateCrcs: true })) {
      attachments.push(attachment.name);
    }
    const metadata = [];
    for await (const record of reader.readMetadata()) metadata.push(record.name);
    return {
      topics,
      attachments,
      metadata,
      first_log_time_ns: String(first),
      last_log_time_ns: String(last),
      statistics_messages: reader.statistics ? String(reader.statistics.messageCount) : null,
    };
  } finally {
    await handle.close();
  }
}

async function streamed(path) {
  const reader = new McapStreamReader({ decompressHandlers, validateCrcs: true });
  reader.append(await readFile(path));
  const channels = new Map();
  const topics = {};
  let record;
  while ((record = reader.nextRecord()) !== undefined) {
    if (record.type === "Channel") channels.set(record.id, record.topic);
    if (record.type === "Message") {
      const topic = channels.get(record.channelId);
      topics[topic] = (topics[topic] ?? 0) + 1;
    }
  }
  if (!reader.done()) throw new Error(`${path}: the stream reader did not reach the footer`);
  return topics;
}

const path = process.argv[2];
const result = await indexed(path);
result.streamed_topics = await streamed(path);
process.stdout.write(JSON.stringify(result));
