import Foundation
import Glibc
import StreamBusProtocol
import StreamBusRecords
import StreamBusStorage
import Testing

@testable import StreamBusBroker

/// A replica whose disk fills up (ENOSPC injected into broker 2's file layer): clear
/// errors, nothing partial in the log, the disk monitor marks the disk full until a probe
/// write succeeds, and replication resumes from where it stopped once space is back.
@Suite struct DiskFullReplicaTests {
  /// The trio with broker 2 on the faulty file layer and a disk monitor whose probe uses
  /// it too (in a folder of its own).
  private func makeTrio(_ label: String = #function) throws -> (
    ReplicaTrio, FaultyFileSystem, DiskSpaceMonitor, TemporaryDirectory
  ) {
    let fileSystem = FaultyFileSystem()
    let probeDirectory = try TemporaryDirectory(label + "probe")
    let monitor = DiskSpaceMonitor(
      dataDirectory: probeDirectory.path, fileSystem: fileSystem, logger: testLogger,
      probeBytes: 4096)
    let trio = try ReplicaTrio(
      label: label, fileSystems: [2: fileSystem], diskSpaces: [2: monitor])
    return (trio, fileSystem, monitor, probeDirectory)
  }

  @Test func followerWithAFullDiskStopsAdvancingAndCatchesUpOnceSpaceIsBack() async throws {
    let (trio, fileSystem, monitor, probeDirectory) = try makeTrio()
    defer { probeDirectory.remove() }
    await trio.elect(1, leaderEpoch: 1)
    _ = await trio[1].append(makeBatch(records: 3, seed: 1), acks: 1, timeoutMs: 0, nowMs: 0)
    try await trio.pumpUntilQuiet()
    #expect(await trio.state(2).logEndOffset == 3)

    fileSystem.update { $0.writeErrno = ENOSPC }
    let pending = await trio[1].append(
      makeBatch(records: 4, seed: 2), acks: -1, timeoutMs: 60_000, nowMs: 0)
    #expect(pending.written.errorCode == .none)
    let failure = await #expect(throws: BrokerRequestError.self) { try await trio.pump(2) }
    #expect(failure?.errorCode == .storageError)
    #expect(failure?.message.contains("No space left") == true, "\(String(describing: failure))")
    #expect(monitor.isFull)
    #expect(monitor.fullReason?.contains("replicated data") == true)
    // Nothing partial: the follower's log still ends where it did, and is durable there.
    let stuck = await trio.state(2)
    #expect(stuck.logEndOffset == 3)
    #expect(stuck.durableEndOffset == 3)
    // The probe fails while the disk is full.
    #expect(!monitor.probe())
    #expect(monitor.isFull)

    // Follower 3 keeps up; the leader drops 2 from the ISR by the lag rule and commits.
    try await trio.pump(3, nowMs: 10_000)
    try await trio.pump(3, nowMs: 10_000)
    let proposal = try #require(
      await trio[1].isrChangeProposal(nowMs: 10_000, replicaLagTimeMaxMs: 2_000))
    #expect(proposal.newIsr == [1, 3])
    await trio[1].isrChangeCompleted(
      newIsr: proposal.newIsr, partitionEpoch: proposal.partitionEpoch + 1, error: .none)
    #expect((await pending.outcome()).errorCode == .none)

    fileSystem.update { $0.writeErrno = nil }
    #expect(monitor.probe())
    #expect(!monitor.isFull)
    #expect(monitor.fullPeriods == 1)
    try await trio.pumpUntilQuiet()
    #expect(await trio.state(2).logEndOffset == 7)
    let leaderLog = try await trio.closeAndReadLog(1)
    #expect(try await trio.closeAndReadLog(2) == leaderLog)
    await trio.shutdown()
  }

  @Test func leaderWithAFullDiskAnswersStorageErrorAndTheNextLeaderHasEverythingAcked()
    async throws
  {
    let (trio, fileSystem, monitor, probeDirectory) = try makeTrio()
    defer { probeDirectory.remove() }
    await trio.elect(2, leaderEpoch: 1)
    let first = await trio[2].append(
      makeBatch(records: 2, seed: 1), acks: -1, timeoutMs: 60_000, nowMs: 0)
    try await trio.pumpUntilQuiet()
    #expect((await first.outcome()).errorCode == .none)

    fileSystem.update { $0.writeErrno = ENOSPC }
    let refused = await trio[2].append(
      makeBatch(records: 3, seed: 2), acks: -1, timeoutMs: 60_000, nowMs: 0)
    #expect(refused.written.errorCode == .storageError)
    #expect(refused.written.baseOffset == -1)
    let message = refused.written.errorMessage ?? ""
    #expect(message.contains("data disk of broker 2 is full"), "\(message)")
    #expect(monitor.isFull)
    #expect(await trio.state(2).logEndOffset == 2)

    // The controller moves the leadership to an ISR member (the broker's controlled-shutdown
    // request); the old leader follows while its disk is still full.
    await trio.elect(1, leaderEpoch: 2, isr: [1, 3])
    let next = await trio[1].append(
      makeBatch(records: 3, seed: 3), acks: 1, timeoutMs: 0, nowMs: 0)
    #expect(next.written.baseOffset == 2)
    await #expect(throws: BrokerRequestError.self) { try await trio.pump(2) }
    #expect(await trio.state(2).logEndOffset == 2)

    fileSystem.update { $0.writeErrno = nil }
    #expect(monitor.probe())
    try await trio.pumpUntilQuiet()
    let leaderLog = try await trio.closeAndReadLog(1)
    #expect(try batchCount(leaderLog) == 2)
    #expect(try await trio.closeAndReadLog(2) == leaderLog)
    #expect(try await trio.closeAndReadLog(3) == leaderLog)
    await trio.shutdown()
  }

  private func batchCount(_ bytes: [UInt8]) throws -> Int {
    var count = 0
    try bytes.withUnsafeBytes { buffer in
      var scanner = RecordBatchScanner(buffer)
      while try scanner.next() != nil { count += 1 }
    }
    return count
  }
}

/// A standalone broker on a full disk: STORAGE_ERROR (Kafka's KAFKA_STORAGE_ERROR, 56)
/// with a clear message, the monitor marks the disk full, its probe clears it once space
/// is back, and appends continue at the next offset.
@Suite struct DiskFullBrokerTests {
  @Test func monitorMarksTheDiskFullAndItsProbeClearsIt() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = FaultyFileSystem()
    let broker = try await TestBroker.start(dataDirectory: directory.path, fileSystem: fileSystem) {
      $0.diskFullProbeIntervalMs = 20
    }
    let client = try await broker.connect()
    _ = try await client.createTopic("full")
    let monitor = broker.broker.replicaManager.diskSpace
    #expect(!monitor.isFull)
    fileSystem.update { $0.writeErrno = ENOSPC }
    let refused = try await client.produce(topic: "full", records: makeBatch(seed: 1), acks: -1)
    #expect(refused.errorCode == .storageError)
    #expect(refused.errorCode.rawValue == 56)
    #expect(monitor.isFull)
    // The maintenance probe keeps failing while the disk is full.
    try await Task.sleep(for: .milliseconds(100))
    #expect(monitor.isFull)
    #expect(!FileManager.default.fileExists(atPath: directory.path + "/.disk-space-probe"))
    fileSystem.update { $0.writeErrno = nil }
    #expect(await eventually { !monitor.isFull })
    let accepted = try await client.produce(topic: "full", records: makeBatch(seed: 2), acks: -1)
    #expect(accepted.errorCode == .none)
    #expect(accepted.baseOffset == 0)
    #expect(!FileManager.default.fileExists(atPath: directory.path + "/.disk-space-probe"))
    await client.close()
    try await broker.stop()
  }
}
