import StreamBusRaft
import StreamBusRaftSQLite
import StreamBusTransport
import Testing

@testable import StreamBusRaftHost

@Suite struct RaftHostSingleNodeTests {
  private func configuration(_ directory: TemporaryDirectory) -> RaftHostConfiguration {
    var configuration = RaftHostConfiguration(
      nodeID: 1, clusterID: "solo", databasePath: directory.path("node.sqlite"),
      raftListen: HostPort(host: "127.0.0.1", port: 0))
    configuration.initialCluster = [
      // Port 0: announce whatever port the listener gets.
      1: PeerAddresses(raftAddress: HostPort(host: "127.0.0.1", port: 0))
    ]
    configuration.snapshotThresholdEntries = 10
    configuration.snapshotTrailingEntries = 3
    return configuration
  }

  private func awaitLeadership(_ host: RaftHost) async throws {
    try await eventually("single node to lead") { host.status().isLeaderReady }
  }

  @Test func invalidConfigurationsAreRefused() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    var notMember = configuration(directory)
    notMember.nodeID = 2
    var zeroTick = configuration(directory)
    zeroTick.tickIntervalMs = 0
    var badTimeouts = configuration(directory)
    badTimeouts.heartbeatTicks = 12
    var emptyCluster = configuration(directory)
    emptyCluster.clusterID = ""
    var hugeTimeout = configuration(directory)
    hugeTimeout.proposalTimeoutMs = .max
    var hugeProposals = configuration(directory)
    hugeProposals.proposalBytesMax = 1 << 30
    for bad in [notMember, zeroTick, badTimeouts, emptyCluster, hugeTimeout, hugeProposals] {
      let error = await #expect(throws: RaftHostError.self) {
        try await RaftHost.start(
          configuration: bad, stateMachine: KeyValueStateMachine(), logger: testLogger("bad"))
      }
      #expect(error?.code == .invalidConfiguration)
    }
  }

  @Test func proposesReadsAndSnapshotsAlone() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let machine = KeyValueStateMachine()
    let host = try await RaftHost.start(
      configuration: configuration(directory), stateMachine: machine, logger: testLogger("solo"))
    do {
      try await awaitLeadership(host)
      // The advertised address is the bound one, since the listen port was 0.
      #expect(host.raftAddress.port != 0)
      var indices: [LogIndex] = []
      for number in 0..<25 {
        indices.append(
          try await host.propose(KeyValueStateMachine.command("k\(number)", "\(number)")))
      }
      #expect(indices == indices.sorted())
      #expect(machine.values.count == 25)
      #expect(try await host.linearizableRead() >= indices[24])
      let status = host.status()
      #expect(status.snapshotIndex > 1)
      #expect(status.appliedIndex == indices[24])

      let empty = await #expect(throws: RaftHostError.self) { try await host.propose([]) }
      #expect(empty?.code == .invalidRequest)

      // Entries behind the compaction point come back as `.compacted`; later ones as data.
      #expect(
        try await host.readCommitted(after: 0, maxBytes: 1 << 20)
          == .compacted(snapshotIndex: status.snapshotIndex))
      let tail = try await host.readCommitted(after: indices[20], maxBytes: 1 << 20)
      #expect(
        tail
          == .entries(
            (21..<25).map {
              CommittedEntry(
                index: indices[$0], term: status.term,
                data: KeyValueStateMachine.command("k\($0)", "\($0)"))
            }, through: indices[24]))
      #expect(
        try await host.readCommitted(after: indices[24], maxBytes: 1)
          == .entries([], through: indices[24]))

      // A caller that decided as leader of one term cannot propose in another.
      let staleTerm = await #expect(throws: RaftHostError.self) {
        try await host.propose(
          KeyValueStateMachine.command("x", "stale"), expectedTerm: status.term + 1)
      }
      #expect(staleTerm?.code == .proposalDropped)
      #expect(machine.values["x"] == nil)
      try await host.propose(KeyValueStateMachine.command("k24", "24"), expectedTerm: status.term)
    } catch {
      await host.shutdown()
      throw error
    }
    await host.shutdown()

    // Restart: the snapshot restores the state machine, the log tail is replayed.
    let restarted = KeyValueStateMachine()
    let again = try await RaftHost.start(
      configuration: configuration(directory), stateMachine: restarted, logger: testLogger("solo"))
    do {
      #expect(restarted.restoredFrom.count == 1)
      try await awaitLeadership(again)
      #expect(restarted.values.count == 25)
      #expect(restarted.values["k24"] == "24")
      try await again.propose(KeyValueStateMachine.command("after", "restart"))
      #expect(restarted.values["after"] == "restart")
    } catch {
      await again.shutdown()
      throw error
    }
    await again.shutdown()
  }

  @Test func secondHostOnTheSameDatabaseIsRefused() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let host = try await RaftHost.start(
      configuration: configuration(directory), stateMachine: KeyValueStateMachine(),
      logger: testLogger("solo"))
    let error = await #expect(throws: SQLiteRaftStorageError.self) {
      try await RaftHost.start(
        configuration: configuration(directory), stateMachine: KeyValueStateMachine(),
        logger: testLogger("solo"))
    }
    #expect(error?.code == .alreadyOpen)
    await host.shutdown()
  }

  @Test func shutdownFailsLaterCallsAndEndsStatusStreams() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let host = try await RaftHost.start(
      configuration: configuration(directory), stateMachine: KeyValueStateMachine(),
      logger: testLogger("solo"))
    try await awaitLeadership(host)
    let changes = host.statusChanges()
    await host.shutdown()
    let error = await #expect(throws: RaftHostError.self) {
      try await host.propose(KeyValueStateMachine.command("a", "b"))
    }
    #expect(error?.code == .shutDown)
    var seen = 0
    for await _ in changes { seen += 1 }
    #expect(seen >= 1)
    await host.shutdown()
  }

  @Test func joiningNodeWaitsWithoutMembership() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    var joining = configuration(directory)
    joining.nodeID = 5
    joining.join = true
    joining.initialCluster = [:]
    let host = try await RaftHost.start(
      configuration: joining, stateMachine: KeyValueStateMachine(), logger: testLogger("join"))
    try await Task.sleep(for: .milliseconds(800))
    let status = host.status()
    #expect(status.voters.isEmpty && status.learners.isEmpty)
    #expect(status.role == .follower)
    #expect(status.term == 0)
    let error = await #expect(throws: RaftHostError.self) {
      try await host.linearizableRead()
    }
    #expect(error?.code == .notLeader)
    await host.shutdown()
  }
}
