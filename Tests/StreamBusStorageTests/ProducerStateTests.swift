import StreamBusRecords
import Testing

@testable import StreamBusStorage

/// A produced batch header: `recordCount` records starting at `sequence`.
private func batch(
  producer producerId: Int64, epoch: Int16 = 0, sequence: Int32, records recordCount: Int32 = 1,
  timestampMs: Int64 = 1_000, baseOffset: Int64 = 0
) -> RecordBatchHeader {
  RecordBatchHeader(
    baseOffset: baseOffset, lastOffsetDelta: recordCount - 1, baseTimestamp: timestampMs,
    maxTimestamp: timestampMs, producerId: producerId, producerEpoch: epoch,
    baseSequence: sequence, recordCount: recordCount)
}

/// Checks and, when allowed, records the batch at the table's end offset, as a leader does.
@discardableResult
private func produce(_ header: RecordBatchHeader, into table: inout ProducerStateTable)
  -> ProducerAppendCheck
{
  let verdict = table.check(header)
  if verdict == .append { table.record(header, firstOffset: table.endOffset) }
  return verdict
}

/// Recomputes the trailing CRC after a test edits snapshot contents on purpose.
private func resealed(_ bytes: [UInt8]) -> [UInt8] {
  var body = Array(bytes.dropLast(4))
  let checksum = CRC32C.checksum(body)
  withUnsafeBytes(of: checksum.bigEndian) { body.append(contentsOf: $0) }
  return body
}

private func snapshotError(_ bytes: [UInt8]) -> StorageError? {
  do {
    _ = try ProducerStateTable(snapshot: bytes)
    return nil
  } catch {
    return error
  }
}

/// Deterministic pseudo-random numbers (the workload must be reproducible).
private struct SplitMix {
  var state: UInt64
  mutating func next(_ bound: Int) -> Int {
    state &+= 0x9E37_79B9_7F4A_7C15
    var mixed = state
    mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
    mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
    return Int((mixed ^ (mixed >> 31)) % UInt64(bound))
  }
}

/// A mixed workload (several producers, epoch bumps, retries, non-idempotent batches); returns
/// the table built incrementally and the appended batches as the log holds them.
private func workload(seed: UInt64, batchCount: Int) throws -> (
  ProducerStateTable, [RecordBatchHeader]
) {
  var random = SplitMix(state: seed)
  var table = try ProducerStateTable()
  var log: [RecordBatchHeader] = []
  var nextSequence: [Int64: Int32] = [:]
  var epochs: [Int64: Int16] = [:]
  var appended: [Int64: [RecordBatchHeader]] = [:]
  for step in 0..<batchCount {
    let producerId = Int64(random.next(5)) - 1
    let timestampMs = Int64(10_000 + step)
    let records = Int32(1 + random.next(4))
    var header: RecordBatchHeader
    if producerId < 0 {
      header = batch(producer: -1, epoch: -1, sequence: -1, records: records)
    } else if random.next(10) == 0, let earlier = appended[producerId]?.last {
      header = earlier  // a retry: must come back as a duplicate, not be appended
    } else {
      if random.next(25) == 0 {
        epochs[producerId, default: 0] += 1
        nextSequence[producerId] = 0
      }
      header = batch(
        producer: producerId, epoch: epochs[producerId, default: 0],
        sequence: nextSequence[producerId, default: 0], records: records,
        timestampMs: timestampMs)
    }
    let firstOffset = table.endOffset
    let verdict = produce(header, into: &table)
    if producerId >= 0, appended[producerId]?.last == header {
      guard case .duplicate = verdict else {
        Issue.record("retry of \(header) got \(verdict)")
        continue
      }
      continue
    }
    #expect(verdict == .append)
    header.baseOffset = firstOffset
    log.append(header)
    if producerId >= 0 {
      appended[producerId, default: []].append(header)
      nextSequence[producerId] = ProducerStateTable.sequence(
        header.baseSequence, advancedBy: records)
    }
  }
  return (table, log)
}

@Suite struct ProducerStateTests {
  @Test func nonIdempotentBatchesAlwaysAppend() throws {
    var table = try ProducerStateTable()
    for sequence: Int32 in [-1, 0, 7, -1] {
      let header = batch(producer: -1, epoch: -1, sequence: sequence, records: 3)
      #expect(produce(header, into: &table) == .append)
    }
    #expect(table.producers.isEmpty)
    #expect(table.endOffset == 12)
  }

  @Test func newProducerMustStartAtSequenceZero() throws {
    var table = try ProducerStateTable()
    #expect(table.check(batch(producer: 7, sequence: 5)) == .unknownProducer)
    #expect(produce(batch(producer: 7, sequence: 0, records: 2), into: &table) == .append)
    let entry = try #require(table.producers[7])
    #expect(entry.producerEpoch == 0)
    #expect(entry.lastSequence == 1)
    #expect(entry.lastOffset == 1)
  }

  @Test func nextBatchMustContinueTheSequence() throws {
    var table = try ProducerStateTable()
    #expect(produce(batch(producer: 1, sequence: 0, records: 3), into: &table) == .append)
    #expect(table.check(batch(producer: 1, sequence: 4)) == .outOfOrder(expectedSequence: 3))
    #expect(table.check(batch(producer: 1, sequence: 2)) == .outOfOrder(expectedSequence: 3))
    #expect(table.check(batch(producer: 1, sequence: 1)) == .outOfOrder(expectedSequence: 3))
    #expect(produce(batch(producer: 1, sequence: 3, records: 2), into: &table) == .append)
    #expect(table.producers[1]?.lastSequence == 4)
    // Producers are independent.
    #expect(table.check(batch(producer: 2, sequence: 0)) == .append)
  }

  @Test func eachOfTheLastFiveBatchesIsADuplicateAndTheSixthOldestIsOutOfOrder() throws {
    var table = try ProducerStateTable()
    // Another producer interleaved so the offsets differ from the sequences.
    var sent: [(RecordBatchHeader, Int64)] = []
    for index in 0..<6 {
      produce(batch(producer: 9, sequence: Int32(index)), into: &table)
      let header = batch(producer: 1, sequence: Int32(index * 2), records: 2)
      sent.append((header, table.endOffset))
      #expect(produce(header, into: &table) == .append)
    }
    #expect(table.producers[1]?.batches.count == ProducerStateTable.batchesPerProducerMax)
    for (header, firstOffset) in sent.dropFirst() {
      #expect(
        table.check(header) == .duplicate(firstOffset: firstOffset, lastOffset: firstOffset + 1))
    }
    #expect(table.check(sent[0].0) == .outOfOrder(expectedSequence: 12))
    // A retry must match the whole batch, not just its first sequence.
    let resized = batch(producer: 1, sequence: 10, records: 1)
    #expect(table.check(resized) == .outOfOrder(expectedSequence: 12))
  }

  @Test func sequencesWrapAroundAfterInt32Max() throws {
    #expect(ProducerStateTable.sequence(Int32.max, advancedBy: 1) == 0)
    #expect(ProducerStateTable.sequence(Int32.max - 1, advancedBy: 3) == 1)
    #expect(ProducerStateTable.sequence(5, advancedBy: 3) == 8)
    var table = try ProducerStateTable()
    // A follower records what the leader accepted, so the table can be put near the top.
    table.record(batch(producer: 4, sequence: Int32.max - 4, records: 3), firstOffset: 0)
    #expect(
      table.check(batch(producer: 4, sequence: 0)) == .outOfOrder(expectedSequence: Int32.max - 1))
    let wrapping = batch(producer: 4, sequence: Int32.max - 1, records: 3)
    #expect(produce(wrapping, into: &table) == .append)
    // Int32.max - 1, Int32.max, 0.
    #expect(table.producers[4]?.lastSequence == 0)
    #expect(table.check(wrapping) == .duplicate(firstOffset: 3, lastOffset: 5))
    #expect(table.check(batch(producer: 4, sequence: 3)) == .outOfOrder(expectedSequence: 1))
    #expect(produce(batch(producer: 4, sequence: 1), into: &table) == .append)
  }

  @Test func epochBumpRestartsAtZeroAndFencesTheOldEpoch() throws {
    var table = try ProducerStateTable()
    let old = batch(producer: 3, epoch: 0, sequence: 0, records: 10)
    #expect(produce(old, into: &table) == .append)
    #expect(
      table.check(batch(producer: 3, epoch: 1, sequence: 10)) == .outOfOrder(expectedSequence: 0))
    #expect(produce(batch(producer: 3, epoch: 1, sequence: 0, records: 2), into: &table) == .append)
    let entry = try #require(table.producers[3])
    #expect(entry.producerEpoch == 1)
    #expect(entry.batches.count == 1)
    // The zombie's continuation and its retry are both fenced, never answered as duplicates.
    #expect(table.check(batch(producer: 3, epoch: 0, sequence: 10)) == .fencedEpoch)
    #expect(table.check(old) == .fencedEpoch)
    #expect(table.check(batch(producer: 3, epoch: 1, sequence: 2)) == .append)
    #expect(table.check(batch(producer: 3, epoch: 5, sequence: 0)) == .append)
  }

  @Test func contradictoryProducerFieldsAreInvalid() throws {
    var table = try ProducerStateTable()
    produce(batch(producer: 1, sequence: 0), into: &table)
    for header in [
      batch(producer: 1, epoch: -1, sequence: 1), batch(producer: 1, sequence: -1),
      RecordBatchHeader(lastOffsetDelta: -1, producerId: 1, producerEpoch: 0, baseSequence: 1),
      RecordBatchHeader(attributes: 0x20, producerId: 1, producerEpoch: 0, baseSequence: 1),
    ] {
      guard case .invalidBatch = table.check(header) else {
        Issue.record("\(header) was not rejected: \(table.check(header))")
        continue
      }
    }
  }

  @Test(arguments: [1, 2, 3] as [UInt64])
  func rebuildFromTheLogEqualsIncrementalState(seed: UInt64) throws {
    let (incremental, log) = try workload(seed: seed, batchCount: 400)
    #expect(incremental.producers.count == 4)
    var rebuilt = try ProducerStateTable()
    try rebuilt.rebuild(from: log)
    #expect(rebuilt == incremental)
    // Rebuilding discards whatever the table held before.
    try rebuilt.rebuild(from: log.prefix(10))
    var prefix = try ProducerStateTable()
    try prefix.replay(log.prefix(10))
    #expect(rebuilt == prefix)
  }

  @Test func snapshotPlusReplayOfTheWholeLogEqualsIncrementalState() throws {
    let (incremental, log) = try workload(seed: 11, batchCount: 300)
    var halfway = try ProducerStateTable()
    try halfway.replay(log.prefix(150))
    var restored = try ProducerStateTable(snapshot: halfway.snapshot())
    #expect(restored == halfway)
    // Replay from the log start: batches the snapshot covers are skipped.
    try restored.replay(log)
    #expect(restored == incremental)
  }

  @Test func replayRejectsABatchStraddlingTheEndOffset() throws {
    var table = try ProducerStateTable()
    table.record(batch(producer: 1, sequence: 0, records: 4), firstOffset: 0)
    let straddling = batch(producer: 1, sequence: 4, records: 4, baseOffset: 2)
    #expect(throws: StorageError.self) { try table.replay([straddling]) }
  }

  @Test func truncateDropsBatchesAtAndBeyondTheNewEnd() throws {
    var table = try ProducerStateTable()
    // Producer 1: batches at 0, 2, 4 (2 records each); producer 2: one batch at 6...8.
    var headers: [RecordBatchHeader] = []
    for index in 0..<3 {
      var header = batch(producer: 1, sequence: Int32(index * 2), records: 2)
      header.baseOffset = table.endOffset
      headers.append(header)
      produce(header, into: &table)
    }
    var late = batch(producer: 2, sequence: 0, records: 3)
    late.baseOffset = table.endOffset
    headers.append(late)
    produce(late, into: &table)
    #expect(table.endOffset == 9)

    // Truncating the log to offset 3 (inside producer 1's second batch) removes that batch
    // whole, so the log's new end, which the table is given, is 2.
    let removed = table.truncate(toEndOffset: 2)
    #expect(removed == [2])
    #expect(table.endOffset == 2)
    #expect(table.producers[2] == nil)
    #expect(table.producers[1]?.batches.count == 1)
    var prefix = try ProducerStateTable()
    try prefix.rebuild(from: headers.prefix(1))
    #expect(table == prefix)
    // The truncated batch is no longer a duplicate: the producer's retry is appended again.
    #expect(table.check(headers[1]) == .append)
    #expect(table.check(headers[2]) == .outOfOrder(expectedSequence: 2))
    #expect(table.truncate(toEndOffset: 100).isEmpty)
    #expect(table.endOffset == 2)
    #expect(table.truncate(toEndOffset: 0) == [1])
    #expect(table.producers.isEmpty)
  }

  @Test func truncateKeepsAnExactSequenceStateWhenBatchesRemain() throws {
    let (_, log) = try workload(seed: 5, batchCount: 200)
    for cut in stride(from: 0, to: log.count, by: 17) {
      var table = try ProducerStateTable()
      try table.rebuild(from: log)
      let newEndOffset = log[cut].baseOffset
      let removed = table.truncate(toEndOffset: newEndOffset)
      var expected = try ProducerStateTable()
      try expected.rebuild(from: log.prefix(cut))
      #expect(table.endOffset == expected.endOffset)
      for (producerId, entry) in expected.producers {
        if removed.contains(producerId) { continue }
        let kept = try #require(table.producers[producerId])
        #expect(kept.producerEpoch == entry.producerEpoch)
        #expect(kept.lastSequence == entry.lastSequence)
        #expect(kept.lastOffset == entry.lastOffset)
        #expect(entry.batches.suffix(kept.batches.count) == kept.batches[...])
      }
      #expect(Set(table.producers.keys).isSubset(of: Set(expected.producers.keys)))
    }
  }

  @Test func idleProducersExpire() throws {
    var table = try ProducerStateTable(producerIdExpirationMs: 500)
    produce(batch(producer: 1, sequence: 0, timestampMs: 1_000), into: &table)
    produce(batch(producer: 2, sequence: 0, timestampMs: 1_000), into: &table)
    produce(batch(producer: 2, sequence: 1, timestampMs: 1_200), into: &table)
    #expect(table.removeExpiredProducers(nowMs: 1_499).isEmpty)
    #expect(table.removeExpiredProducers(nowMs: 1_500) == [1])
    #expect(table.check(batch(producer: 1, sequence: 1)) == .unknownProducer)
    #expect(table.check(batch(producer: 2, sequence: 2)) == .append)
    #expect(table.removeExpiredProducers(nowMs: 1_700) == [2])
    #expect(table.producers.isEmpty)
    #expect(throws: StorageError.self) { try ProducerStateTable(producerIdExpirationMs: 0) }
  }

  @Test func snapshotRoundTrips() throws {
    let empty = try ProducerStateTable()
    #expect(try ProducerStateTable(snapshot: empty.snapshot()) == empty)
    let (table, _) = try workload(seed: 7, batchCount: 200)
    let bytes = table.snapshot()
    let restored = try ProducerStateTable(
      snapshot: bytes, producerIdExpirationMs: table.producerIdExpirationMs)
    #expect(restored == table)
    #expect(restored.snapshot() == bytes)
  }

  @Test func everyTruncationAndEveryBitFlipOfASnapshotThrows() throws {
    let (table, _) = try workload(seed: 3, batchCount: 60)
    let bytes = table.snapshot()
    for length in 0..<bytes.count {
      #expect(snapshotError(Array(bytes.prefix(length)))?.code == .corruptLog, "length \(length)")
    }
    for index in bytes.indices {
      var damaged = bytes
      damaged[index] ^= 0x10
      #expect(snapshotError(damaged)?.code == .corruptLog, "byte \(index)")
    }
  }

  @Test func inconsistentSnapshotContentsThrowEvenWithAValidChecksum() throws {
    var table = try ProducerStateTable()
    produce(batch(producer: 5, sequence: 0, records: 2), into: &table)
    produce(batch(producer: 8, sequence: 0), into: &table)
    let bytes = table.snapshot()
    // Layout: header 18 bytes, then producer 5 at 18 (id 8, epoch 2, count 1, batch 32),
    // producer 8 at 61.
    func edited(_ edit: (inout [UInt8]) -> Void) -> [UInt8] {
      var copy = bytes
      edit(&copy)
      return resealed(copy)
    }
    let cases: [(String, [UInt8])] = [
      ("version", edited { $0[5] = 2 }),
      ("cannot fit", edited { $0[14] = 0x7F }),
      ("not ascending", edited { $0[68] = 5 }),
      ("batches", edited { $0[28] = 0 }),
      ("batches", edited { $0[28] = 6 }),
      ("negative epoch", edited { $0[26] = 0xFF }),
      ("beyond the end offset", edited { $0[13] = 2 }),
      ("unexpected bytes", resealed(bytes.dropLast(4) + [0, 0, 0, 0, 0])),
      ("checksum", Array(bytes.dropLast(4)) + [0, 0, 0, 0]),
    ]
    for (expected, damaged) in cases {
      let error = try #require(snapshotError(damaged), "\(expected)")
      #expect(error.code == .corruptLog)
      #expect(error.message.contains(expected), "\(error.message)")
    }
    var badMagic = bytes
    badMagic[0] = 0
    #expect(snapshotError(badMagic)?.message.contains("magic") == true)
  }
}
