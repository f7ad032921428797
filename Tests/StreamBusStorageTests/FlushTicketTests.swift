import Glibc
import Testing

@testable import StreamBusStorage

/// `beginFlush` / `FlushTicket.sync` / `completeFlush`: group commit with the fdatasync
/// outside the log's owner.
@Suite struct FlushTicketTests {
  @Test func ticketCoversAppendsBeforeItAndNotAfter() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let log = try PartitionLog(directory: directory.path, config: smallConfig())
    #expect(log.beginFlush() == nil)
    try log.append(makeBatch(records: 3), partitionLeaderEpoch: 0)
    let ticket = try #require(log.beginFlush())
    #expect(ticket.endOffset == 3)
    #expect(log.isFlushInFlight)
    // Appends continue while the ticket syncs elsewhere.
    try log.append(makeBatch(records: 2, seed: 1), partitionLeaderEpoch: 0)
    try ticket.sync()
    #expect(log.durableEndOffset == 0)
    log.completeFlush(ticket, succeeded: true)
    #expect(!log.isFlushInFlight)
    #expect(log.durableEndOffset == 3)
    let next = try #require(log.beginFlush())
    #expect(next.endOffset == 5)
    try next.sync()
    log.completeFlush(next, succeeded: true)
    #expect(log.durableEndOffset == 5)
    #expect(log.beginFlush() == nil)
  }

  @Test func failedSyncLeavesDataUnsyncedForTheNextFlush() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = FaultInjectingFileSystem()
    let log = try PartitionLog(
      directory: directory.path, config: smallConfig(), fileSystem: fileSystem)
    try log.append(makeBatch(), partitionLeaderEpoch: 0)
    fileSystem.update { $0.syncErrno = EIO }
    let ticket = try #require(log.beginFlush())
    #expect(throws: StorageError.self) { try ticket.sync() }
    log.completeFlush(ticket, succeeded: false)
    #expect(log.durableEndOffset == 0)
    fileSystem.update { $0.syncErrno = nil }
    let retry = try #require(log.beginFlush())
    #expect(retry.endOffset == 3)
    try retry.sync()
    log.completeFlush(retry, succeeded: true)
    #expect(log.durableEndOffset == 3)
  }

  @Test func synchronousFlushAndRollDuringATicketStillSync() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = FaultInjectingFileSystem()
    let log = try PartitionLog(
      directory: directory.path, config: smallConfig(segmentBytes: 1024), fileSystem: fileSystem)
    try log.append(makeBatch(), partitionLeaderEpoch: 0)
    let ticket = try #require(log.beginFlush())
    // The ticket cleared the segment's unsynced flag; a synchronous flush must not trust it.
    fileSystem.update { $0.syncErrno = EIO }
    #expect(throws: StorageError.self) { try log.flush() }
    fileSystem.update { $0.syncErrno = nil }
    #expect(log.durableEndOffset == 0)
    // Appends that roll the segment sync the old one, whatever the ticket's state.
    while log.segmentBaseOffsets.count == 1 {
      try log.append(makeBatch(records: 3, valueBytes: 100), partitionLeaderEpoch: 0)
    }
    #expect(log.durableEndOffset == log.segmentBaseOffsets[1])
    try ticket.sync()
    log.completeFlush(ticket, succeeded: true)
    #expect(log.durableEndOffset == log.segmentBaseOffsets[1])
    try log.flush()
    #expect(log.durableEndOffset == log.logEndOffset)
  }
}
