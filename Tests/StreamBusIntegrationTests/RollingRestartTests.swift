import Foundation
import StreamBusClient
import StreamBusTestSupport
import StreamBusVerification
import StreamBusWorkload
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Controlled shutdown under load: every broker in turn gets SIGTERM (it asks the controller to
/// move its leaderships away and exits once it leads nothing), then restarts and rejoins the
/// ISR. Producers may retry but must not fail, and the checker must find nothing lost,
/// duplicated or reordered.
@Suite(.serialized, .timeLimit(.minutes(10)))
struct RollingRestartTests {
  typealias Settings = ReplicationTestSettings

  @Test func rollingRestartOfEveryBrokerUnderLoadHasNoFailuresAndNoLoss() async throws {
    let rounds = Settings.isLong ? 3 : 1
    try await withReplicationCluster { cluster in
      let topic = "rolling"
      try await cluster.createTopic(topic, partitions: 3)
      var configuration = WorkloadConfiguration(topic: topic, producers: 3)
      configuration.valueBytes = 24
      configuration.tailingReaders = 1
      let workload = Workload(
        clientConfig: try cluster.clientConfig(), configuration: configuration)
      let timeline = Timeline("rolling-restart", history: workload.history)
      try await workload.start()
      try #require(
        await workload.waitForAcknowledged(atLeast: 2_000, timeoutMs: 60_000),
        "no steady writes before the restarts: \(workload.progress)")
      timeline.mark("writing: \(workload.progress)")

      var shutdownSeconds: [Double] = []
      for round in 0..<rounds {
        for id in cluster.brokerIDs {
          let ledBefore = try await leaderships(of: id, cluster: cluster, topic: topic)
          let stoppingAt = ContinuousClock.now
          timeline.mark(
            "round \(round + 1): SIGTERM broker \(id) (leads \(ledBefore.map { "p\($0)" }))")
          let process = try #require(cluster.broker(id).process)
          cluster.signalBroker(id, SIGTERM)
          let exit = try await process.waitForExit(timeoutMs: 40_000)
          let elapsed = ContinuousClock.now - stoppingAt
          shutdownSeconds.append(
            Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
          timeline.mark("broker \(id) exited (\(exit)) after \(elapsed)")
          #expect(exit == .exited(code: 0), "broker \(id) did not stop cleanly: \(exit)")
          // Controlled shutdown hands leadership over before exiting: nothing is leaderless.
          let ledAfter = try await leaderships(of: id, cluster: cluster, topic: topic)
          #expect(ledAfter.isEmpty, "broker \(id) still leads \(ledAfter) after exiting")

          try await cluster.startBroker(id)
          timeline.mark("broker \(id) restarted")
          for partition in Int32(0)..<3 {
            _ = try await cluster.waitForPartition(
              topic, partition, timeoutMs: 60_000, "full ISR after restarting broker \(id)"
            ) { $0.leader >= 0 && $0.isr.count == 3 }
          }
          timeline.mark("ISR full again: \(workload.progress)")
        }
      }

      let before = workload.progress.acknowledged
      try #require(
        await workload.waitForAcknowledged(atLeast: before + 2_000, timeoutMs: 60_000),
        "writes did not continue after the restarts: \(workload.progress)")
      await workload.stop()
      timeline.mark("producers stopped: \(workload.progress)")
      let summary = try await workload.finalRead()
      timeline.mark(summary.description)
      let report = workload.check(name: "rolling-restart")
      print(report)
      print(
        "rolling-restart: SIGTERM -> exit "
          + shutdownSeconds.map { String(format: "%.3f s", $0) }.joined(separator: ", "))

      #expect(summary.incompletePartitions.isEmpty, "\(summary)")
      #expect(report.isValid, "\(report)")
      #expect(report.failedCount == 0, "producers saw failures: \(report)")
      #expect(report.indeterminateCount == 0, "\(report)")
    }
  }

  /// Partitions of `topic` whose leader, as the metaservers see it, is broker `id`.
  private func leaderships(of id: Int32, cluster: ReplicationCluster, topic: String) async throws
    -> [Int32]
  {
    let description = try await cluster.metaClient.describeTopic(topic)
    return description.partitions.filter { $0.leader == id }.map(\.partition).sorted()
  }
}
