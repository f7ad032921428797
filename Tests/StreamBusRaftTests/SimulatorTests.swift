import Foundation
import StreamBusRaft
import StreamBusRaftSimulation
import Testing

/// Runs seeds on all cores; returns the failures (seed and message).
private func runSeeds(
  _ seeds: ClosedRange<UInt64>, nodes: Int, steps: Int,
  raftFaults: RaftTestFaults = RaftTestFaults()
) async -> [SimulationResult] {
  await withTaskGroup(of: [SimulationResult].self) { group in
    let workers = UInt64(max(1, ProcessInfo.processInfo.activeProcessorCount))
    for worker in 0..<workers {
      group.addTask {
        var failures: [SimulationResult] = []
        var seed = seeds.lowerBound + worker
        while seed <= seeds.upperBound {
          let result = Simulator.run(
            SimulationOptions(
              seed: seed, nodeCount: nodes, steps: steps, raftFaults: raftFaults))
          if !result.passed { failures.append(result) }
          seed += workers
        }
        return failures
      }
    }
    var failures: [SimulationResult] = []
    for await batch in group { failures += batch }
    return failures.sorted { $0.options.seed < $1.options.seed }
  }
}

@Suite struct SimulatorTests {
  /// Seeds per cluster size; RAFT_SIM_SEEDS raises it for longer hunts.
  private static var seedCount: UInt64 {
    UInt64(ProcessInfo.processInfo.environment["RAFT_SIM_SEEDS"] ?? "") ?? 500
  }

  @Test(arguments: [3, 5])
  func manySeedsPassEveryCheck(nodes: Int) async {
    let failures = await runSeeds(1...Self.seedCount, nodes: nodes, steps: 160)
    for failure in failures.prefix(5) {
      Issue.record(
        "\(failure.failure ?? "") — reproduce: \(failure.options.reproduceCommand)")
    }
    #expect(failures.isEmpty)
  }

  @Test func sameSeedSameRun() {
    let options = SimulationOptions(seed: 42, nodeCount: 5, steps: 300)
    let first = Simulator.run(options)
    let second = Simulator.run(options)
    #expect(first.passed)
    #expect(first.committedIndex == second.committedIndex)
    #expect(first.operations == second.operations)
    #expect(first.statistics == second.statistics)
  }

  @Test func runsExerciseTheFeatures() async {
    // Over a handful of seeds every mechanism must actually happen, or the clean runs
    // above would prove little.
    var totals: [String: Int] = [:]
    for seed: UInt64 in 1...10 {
      let result = Simulator.run(SimulationOptions(seed: seed, nodeCount: 5, steps: 250))
      #expect(result.passed, "\(result.failure ?? "")")
      for (name, count) in result.statistics { totals[name, default: 0] += count }
    }
    for name in [
      "leaders elected", "snapshots installed", "conf changes applied", "reads served",
      "transfers started", "delivered.installSnapshot", "delivered.timeoutNow",
      "delivered.readIndex", "delivered.requestPreVote", "delivered.appendResponse.reject",
    ] {
      #expect((totals[name] ?? 0) > 0, "\(name) never happened")
    }
  }

  @Test func reproduceCommandNamesEverything() {
    var options = SimulationOptions(
      seed: 9, nodeCount: 5, steps: 77, faults: [.drop, .crash],
      raftFaults: RaftTestFaults(grantSecondVote: true))
    options.recordsEvents = false
    #expect(
      options.reproduceCommand
        == "swift run raft-sim --seed 9 --nodes 5 --steps 77 --faults drop,crash --bugs second-vote"
    )
  }
}

/// Each deliberate bug must be reported by the simulator within a bounded number of seeds;
/// otherwise the clean runs would not mean much.
@Suite struct CheckersBiteTests {
  private func firstFailure(_ faults: RaftTestFaults, nodes: Int, seedsMax: UInt64) async
    -> SimulationResult?
  {
    await runSeeds(1...seedsMax, nodes: nodes, steps: 300, raftFaults: faults).first
  }

  @Test func secondVoteInTermIsCaught() async throws {
    let failure = try #require(
      await firstFailure(RaftTestFaults(grantSecondVote: true), nodes: 3, seedsMax: 60))
    #expect(
      failure.failure?.contains("voted for") == true
        || failure.failure?.contains("two leaders") == true)
  }

  @Test func applyBeforeCommitIsCaught() async throws {
    let failure = try #require(
      await firstFailure(RaftTestFaults(applyBeforeCommit: true), nodes: 3, seedsMax: 20))
    #expect(failure.failure?.contains("not committed") == true)
  }

  @Test func ackBeforePersistIsCaught() async throws {
    let failure = try #require(
      await firstFailure(RaftTestFaults(ackBeforePersist: true), nodes: 3, seedsMax: 300))
    #expect(failure.failure != nil)
  }
}

@Suite struct LinearizabilityCheckerTests {
  private func write(_ id: UInt64, _ value: UInt64, _ from: UInt64, _ to: UInt64?)
    -> ClientOperation
  {
    ClientOperation(id: id, key: 0, kind: .write(value), invokedAt: from, returnedAt: to)
  }

  private func read(_ id: UInt64, _ value: UInt64?, _ from: UInt64, _ to: UInt64)
    -> ClientOperation
  {
    ClientOperation(id: id, key: 0, kind: .read(value), invokedAt: from, returnedAt: to)
  }

  @Test func sequentialHistoryIsLinearizable() {
    #expect(
      LinearizabilityChecker.check([
        read(1, nil, 1, 2), write(2, 5, 3, 4), read(3, 5, 5, 6), write(4, 7, 7, 8),
        read(5, 7, 9, 10),
      ]) == nil)
  }

  @Test func concurrentWriteMayBeSeenOrNot() {
    // The write overlaps both reads: old-then-new is fine.
    #expect(
      LinearizabilityChecker.check([
        write(1, 1, 1, 2), write(2, 2, 3, 10), read(3, 1, 4, 5), read(4, 2, 6, 7),
      ]) == nil)
  }

  @Test func staleReadIsNotLinearizable() {
    // The second write finished before the read started, yet the read saw the first.
    #expect(
      LinearizabilityChecker.check([
        write(1, 1, 1, 2), write(2, 2, 3, 4), read(3, 1, 5, 6),
      ]) != nil)
  }

  @Test func newThenOldIsNotLinearizable() {
    #expect(
      LinearizabilityChecker.check([
        write(1, 1, 1, 2), write(2, 2, 3, 20), read(3, 2, 4, 5), read(4, 1, 6, 7),
      ]) != nil)
  }

  @Test func unknownWriteMayHaveHappenedOrNot() {
    #expect(
      LinearizabilityChecker.check([write(1, 9, 1, nil), read(2, nil, 2, 3)]) == nil)
    #expect(
      LinearizabilityChecker.check([write(1, 9, 1, nil), read(2, 9, 2, 3)]) == nil)
    #expect(
      LinearizabilityChecker.check([write(1, 9, 5, nil), read(2, 9, 2, 3)]) != nil,
      "a write cannot be seen before it was invoked")
  }

  @Test func keysAreCheckedIndependently() {
    let history = [
      ClientOperation(id: 1, key: 1, kind: .write(1), invokedAt: 1, returnedAt: 2),
      ClientOperation(id: 2, key: 2, kind: .read(nil), invokedAt: 3, returnedAt: 4),
      ClientOperation(id: 3, key: 1, kind: .read(nil), invokedAt: 5, returnedAt: 6),
    ]
    let problem = LinearizabilityChecker.check(history)
    #expect(problem?.hasPrefix("key 1") == true)
  }
}
