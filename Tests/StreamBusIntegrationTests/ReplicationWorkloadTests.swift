import Foundation
import StreamBusClient
import StreamBusTestSupport
import StreamBusVerification
import StreamBusWorkload
import Testing

/// The workload driver and checker end to end against one standalone broker (no faults): what
/// the replication tests rely on, checked where nothing should go wrong.
@Suite(.timeLimit(.minutes(2)))
struct ReplicationWorkloadTests {
  @Test func workloadOnAStandaloneBrokerChecksClean() async throws {
    try await ProcessHarness.run { harness in
      let broker = try await harness.startBroker()
      let config = ClientConfig(bootstrapBrokers: [try HostPort(parsing: broker.address)])
      let admin = Admin(config: config)
      _ = try await admin.createTopic("workload", partitions: 3)
      await admin.close()

      var configuration = WorkloadConfiguration(topic: "workload", producers: 2, recordsMax: 6_000)
      configuration.tailingReaders = 1
      configuration.outstandingPerPartitionMax = 300
      let workload = Workload(clientConfig: config, configuration: configuration)
      let report = try await workload.run(name: "standalone-workload")
      print(report)

      #expect(report.isValid, "\(report)")
      #expect(report.sentCount == 6_000)
      #expect(report.acknowledgedCount == 6_000)
      #expect(report.finalRecordCount == 6_000)
      #expect(report.finalRanges.keys.sorted() == [0, 1, 2])
      #expect(workload.progress.acknowledged == 6_000)
      // Both producers wrote every partition, with their own sequence numbers.
      let sends = workload.history.events.filter { $0.kind == .send }
      #expect(Set(sends.map(\.process)) == ["w0", "w1"])
      #expect(Set(sends.map(\.partition)) == [0, 1, 2])
      #expect(Set(sends.compactMap(\.value)).count == 6_000)
    }
  }

  @Test func checkerCatchesARecordRemovedBehindTheWorkloadsBack() async throws {
    try await ProcessHarness.run { harness in
      let broker = try await harness.startBroker()
      let config = ClientConfig(bootstrapBrokers: [try HostPort(parsing: broker.address)])
      let admin = Admin(config: config)
      _ = try await admin.createTopic("tampered", partitions: 1)
      await admin.close()

      let configuration = WorkloadConfiguration(topic: "tampered", producers: 1, recordsMax: 200)
      let workload = Workload(clientConfig: config, configuration: configuration)
      try await workload.start()
      await workload.waitUntilFinished()
      // A claimed acknowledgement for a value that was never written: the final read cannot
      // find it, exactly as if the broker had lost it.
      workload.history.recordSend("w7-0", process: "w7", partition: 0)
      workload.history.recordAck("w7-0", offset: 5, process: "w7", partition: 0)
      try await workload.finalRead()
      let directory = harness.rootDirectory.appendingPathComponent("histories")
      let report = HistoryChecker().checkKeepingFailure(
        workload.history, name: "tampered", directory: directory)

      #expect(report.count(of: .lostAcknowledged) == 1)
      #expect(report.count(of: .acknowledgedOffsetMismatch) == 0)
      #expect(report.violationCounts.count == 1, "\(report)")
      let file = try #require(report.historyFile)
      let kept = try HistoryFile.load(from: file)
      #expect(kept.events.contains { $0.kind == .read && $0.isFinal == true })
    }
  }
}
