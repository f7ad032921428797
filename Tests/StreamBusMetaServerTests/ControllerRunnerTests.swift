import Logging
import NIOConcurrencyHelpers
import StreamBusMetaServer
import StreamBusMetadata
import StreamBusProtocol
import StreamBusRaft
import StreamBusRaftHost
import Testing

/// A Raft log stand-in: numbers proposals, applies them to the state machine, and can hold
/// them back, fail them, or slip a foreign batch in first.
final class FakeLog: ControllerLog {
  struct State {
    var nextIndex: UInt64 = 1
    var proposals: [[MetadataRecord]] = []
    var isHeld = false
    var held: [CheckedContinuation<Void, Never>] = []
    var failure: RaftHostError?
    var foreignBatchBeforeNext: [UInt8]?
  }

  let state = NIOLockedValueBox(State())
  let stateMachine: MetadataStateMachine

  init(stateMachine: MetadataStateMachine) {
    self.stateMachine = stateMachine
  }

  func hold() { state.withLockedValue { $0.isHeld = true } }

  func release() {
    let waiting = state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
      state.isHeld = false
      defer { state.held = [] }
      return state.held
    }
    for continuation in waiting { continuation.resume() }
  }

  var proposals: [[MetadataRecord]] { state.withLockedValue { $0.proposals } }

  func propose(_ data: [UInt8], expectedTerm: Term?) async throws -> LogIndex {
    await withCheckedContinuation { continuation in
      let proceed = state.withLockedValue { state -> Bool in
        if state.isHeld {
          state.held.append(continuation)
          return false
        }
        return true
      }
      if proceed { continuation.resume() }
    }
    let (failure, foreign) = state.withLockedValue { state in
      defer { state.foreignBatchBeforeNext = nil }
      return (state.failure, state.foreignBatchBeforeNext)
    }
    if let failure { throw failure }
    if let foreign {
      let index = state.withLockedValue { state -> UInt64 in
        defer { state.nextIndex += 1 }
        return state.nextIndex
      }
      try stateMachine.apply(entries: [CommittedEntry(index: index, term: 1, data: foreign)])
    }
    let index = state.withLockedValue { state -> UInt64 in
      state.proposals.append((try? MetadataRecord.decodeBatch(data)) ?? [])
      defer { state.nextIndex += 1 }
      return state.nextIndex
    }
    try stateMachine.apply(entries: [CommittedEntry(index: index, term: 1, data: data)])
    return index
  }
}

struct ControllerRunnerTests {
  static let controller = MetadataController()

  static func makeRunner(
    sessionTimeoutMs: Int64 = 60_000, fenceCheckIntervalMs: Int64 = 50, bulkPerRound: Int = 64
  ) -> (ControllerRunner, FakeLog, MetadataStateMachine) {
    let stateMachine = MetadataStateMachine(tailBatchesMax: 1_000, logger: Logger(label: "test"))
    let log = FakeLog(stateMachine: stateMachine)
    var settings = ControllerRunner.Settings(
      nodeID: 1, sessionTimeoutMs: sessionTimeoutMs, fenceCheckIntervalMs: fenceCheckIntervalMs)
    settings.bulkOperationsPerRoundMax = bulkPerRound
    let runner = ControllerRunner(
      settings: settings, log: log, stateMachine: stateMachine, logger: Logger(label: "test"))
    return (runner, log, stateMachine)
  }

  static func registration(_ id: BrokerID) -> BrokerRegistrationRequest {
    BrokerRegistrationRequest(
      brokerID: id, incarnationID: Int64(id) * 11,
      endpoints: [BrokerEndpoint(name: "client", host: "127.0.0.1", port: 9_000 + id)],
      rack: nil, capacity: BrokerCapacity(diskBytes: 1 << 30))
  }

  /// Registers and unfences brokers through the runner.
  static func addBrokers(
    _ runner: ControllerRunner, _ ids: [BrokerID], stateMachine: MetadataStateMachine
  )
    async throws
  {
    for id in ids {
      let registered = try await runner.perform("BrokerRegister", isHeartbeat: true) {
        image, sessions, nowMs in
        controller.registerBroker(registration(id), image: image, sessions: &sessions, nowMs: nowMs)
      }
      let offset = stateMachine.appliedOffset
      let heartbeat = try await runner.perform("BrokerHeartbeat", isHeartbeat: true) {
        image, sessions, nowMs in
        controller.heartbeat(
          BrokerHeartbeatRequest(
            brokerID: id, brokerEpoch: registered.brokerEpoch, appliedMetadataOffset: offset),
          image: image, sessions: &sessions, nowMs: nowMs)
      }
      #expect(!heartbeat.isFenced)
    }
  }

  static func createTopic(_ runner: ControllerRunner, _ name: String) async throws
    -> CreateTopicResult
  {
    let results = try await runner.perform("CreateTopics") { image, _, _ in
      controller.createTopics(
        [CreatableTopic(name: name, partitions: 1, replicationFactor: 1)], validateOnly: false,
        image: image)
    }
    return results[0]
  }

  @Test func operationsQueuedDuringARoundShareTheNextProposal() async throws {
    let (runner, log, stateMachine) = Self.makeRunner()
    await runner.start()
    try await Self.addBrokers(runner, [1], stateMachine: stateMachine)
    log.hold()
    async let first = Self.createTopic(runner, "first")
    try await Task.sleep(for: .milliseconds(50))
    async let second = Self.createTopic(runner, "second")
    async let third = Self.createTopic(runner, "third")
    try await Task.sleep(for: .milliseconds(50))
    let before = log.proposals.count
    log.release()
    let results = try await [first, second, third]
    #expect(results.allSatisfy { $0.errorCode == .none })
    #expect(Set(results.map(\.topicID)).count == 3)
    // One proposal for "first", then one for both queued while it was held.
    #expect(log.proposals.count == before + 2)
    #expect(stateMachine.image.topics.count == 3)
    await runner.stop(leaderID: nil, leaderAPIAddress: nil)
  }

  @Test func heartbeatsGoAheadOfQueuedBulkWork() async throws {
    let (runner, log, stateMachine) = Self.makeRunner(bulkPerRound: 2)
    await runner.start()
    try await Self.addBrokers(runner, [1], stateMachine: stateMachine)
    let epoch = try #require(stateMachine.image.brokers[1]?.epoch)
    let order = NIOLockedValueBox<[String]>([])
    log.hold()
    let blocker = Task { _ = try await Self.createTopic(runner, "blocker") }
    try await Task.sleep(for: .milliseconds(50))
    var bulk: [Task<Void, any Error>] = []
    for index in 0..<10 {
      bulk.append(
        Task {
          _ = try await Self.createTopic(runner, "bulk-\(index)")
          order.withLockedValue { $0.append("bulk-\(index)") }
        })
    }
    try await Task.sleep(for: .milliseconds(50))
    let heartbeat = Task {
      _ = try await runner.perform("BrokerHeartbeat", isHeartbeat: true) {
        image, sessions, nowMs in
        Self.controller.heartbeat(
          BrokerHeartbeatRequest(brokerID: 1, brokerEpoch: epoch, appliedMetadataOffset: 0),
          image: image, sessions: &sessions, nowMs: nowMs)
      }
      order.withLockedValue { $0.append("heartbeat") }
    }
    try await Task.sleep(for: .milliseconds(50))
    log.release()
    try await blocker.value
    try await heartbeat.value
    for task in bulk { try await task.value }
    let finished = order.withLockedValue { $0 }
    let heartbeatPosition = try #require(finished.firstIndex(of: "heartbeat"))
    // Queued after ten bulk operations, answered within the first round after the block.
    #expect(heartbeatPosition <= 2, "order: \(finished)")
    await runner.stop(leaderID: nil, leaderAPIAddress: nil)
  }

  @Test func silentBrokersAreFencedWithoutAnyRequest() async throws {
    let (runner, _, stateMachine) = Self.makeRunner(sessionTimeoutMs: 150, fenceCheckIntervalMs: 10)
    await runner.start()
    try await Self.addBrokers(runner, [1, 2], stateMachine: stateMachine)
    // Each was unfenced by its heartbeat (checked in addBrokers); now nobody heartbeats.
    let deadline = ContinuousClock.now + .seconds(5)
    while ContinuousClock.now < deadline
      && !stateMachine.image.brokers.values.allSatisfy(\.fenced)
    {
      try await Task.sleep(for: .milliseconds(10))
    }
    let fenced = stateMachine.image.brokers.values.map(\.fenced)
    #expect(fenced == [true, true])
    await runner.stop(leaderID: nil, leaderAPIAddress: nil)
  }

  @Test func aNewControllerGivesEveryBrokerAFreshSession() async throws {
    let stateMachine = MetadataStateMachine(tailBatchesMax: 1_000, logger: Logger(label: "test"))
    let log = FakeLog(stateMachine: stateMachine)
    func runner(sessionTimeoutMs: Int64) -> ControllerRunner {
      ControllerRunner(
        settings: ControllerRunner.Settings(
          nodeID: 1, sessionTimeoutMs: sessionTimeoutMs, fenceCheckIntervalMs: 10),
        log: log, stateMachine: stateMachine, logger: Logger(label: "test"))
    }
    // The first controller's own timeout does not matter: it never sees the silence.
    let first = runner(sessionTimeoutMs: 60_000)
    await first.start()
    try await Self.addBrokers(first, [1], stateMachine: stateMachine)
    await first.stop(leaderID: nil, leaderAPIAddress: nil)
    // Longer than a session passes without a controller (a failover).
    try await Task.sleep(for: .milliseconds(400))
    let second = runner(sessionTimeoutMs: 300)
    let started = ContinuousClock.now
    await second.start()
    try await Task.sleep(for: .milliseconds(150))
    #expect(stateMachine.image.brokers[1]?.fenced == false, "fenced on a stale timestamp")
    let deadline = ContinuousClock.now + .seconds(5)
    while stateMachine.image.brokers[1]?.fenced == false && ContinuousClock.now < deadline {
      try await Task.sleep(for: .milliseconds(10))
    }
    // Still silent a whole session after the failover: fenced.
    #expect(stateMachine.image.brokers[1]?.fenced == true)
    #expect(ContinuousClock.now - started >= .milliseconds(290))
    await second.stop(leaderID: nil, leaderAPIAddress: nil)
  }

  @Test func stoppingAnswersQueuedAndInFlightOperationsWithNotLeader() async throws {
    let (runner, log, stateMachine) = Self.makeRunner()
    await runner.start()
    try await Self.addBrokers(runner, [1], stateMachine: stateMachine)
    log.hold()
    let inFlight = Task { try await Self.createTopic(runner, "in-flight") }
    try await Task.sleep(for: .milliseconds(50))
    let queued = Task { try await Self.createTopic(runner, "queued") }
    try await Task.sleep(for: .milliseconds(50))
    await runner.stop(leaderID: 2, leaderAPIAddress: "127.0.0.1:9999")
    for task in [inFlight, queued] {
      await #expect {
        _ = try await task.value
      } throws: { error in
        (error as? ControllerFailure)?.errorCode == .notLeader
          && (error as? ControllerFailure)?.leaderAPIAddress == "127.0.0.1:9999"
      }
    }
    await #expect(throws: ControllerFailure.self) {
      _ = try await Self.createTopic(runner, "after-stop")
    }
    log.release()
  }

  @Test func proposalFailuresBecomeApiErrors() async throws {
    let (runner, log, stateMachine) = Self.makeRunner()
    await runner.start()
    try await Self.addBrokers(runner, [1], stateMachine: stateMachine)
    log.state.withLockedValue { $0.failure = RaftHostError(.timedOut, "no quorum") }
    await #expect {
      _ = try await Self.createTopic(runner, "lost")
    } throws: { error in
      (error as? ControllerFailure)?.errorCode == .requestTimedOut
    }
    log.state.withLockedValue {
      $0.failure = RaftHostError(.notLeader, "deposed", leaderID: 3)
    }
    await #expect {
      _ = try await Self.createTopic(runner, "deposed")
    } throws: { error in
      (error as? ControllerFailure)?.errorCode == .notLeader
        && (error as? ControllerFailure)?.leaderID == 3
    }
    await runner.stop(leaderID: nil, leaderAPIAddress: nil)
  }

  @Test func aCommittedBatchThatWasSkippedIsReportedAsAnError() async throws {
    let (runner, log, stateMachine) = Self.makeRunner()
    await runner.start()
    try await Self.addBrokers(runner, [1], stateMachine: stateMachine)
    // Another writer's batch takes the topic id the controller is about to use.
    let nextID = stateMachine.image.nextTopicID
    log.state.withLockedValue {
      $0.foreignBatchBeforeNext = MetadataRecord.encodeBatch([
        .topicCreated(name: "other", topicID: nextID)
      ])
    }
    await #expect {
      _ = try await Self.createTopic(runner, "mine")
    } throws: { error in
      let failure = error as? ControllerFailure
      return failure?.errorCode == .unknownServerError
        && failure?.message.contains("skipped") == true
    }
    #expect(stateMachine.image.topic(named: "mine") == nil)
    #expect(stateMachine.image.topic(named: "other") != nil)
    // The next operation starts from the real image and succeeds.
    #expect(try await Self.createTopic(runner, "mine").errorCode == .none)
    await runner.stop(leaderID: nil, leaderAPIAddress: nil)
  }
}
