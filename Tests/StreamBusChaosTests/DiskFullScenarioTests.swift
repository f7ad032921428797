import Foundation
import StreamBusTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

extension NetworkChaosTests {
  /// A broker's data disk fills up under the verification workload (every broker's data
  /// directory is a small tmpfs; the test fills one with a file): the broker logs a clear
  /// error, gives up its leaderships and leaves the ISRs (docs/databroker.md, "Disk full"),
  /// acks=all goes on with the other two; then the file is removed and the broker rejoins every
  /// ISR. Nothing acknowledged is lost, and the broker's logs need no repair when it restarts.
  @Suite(.serialized, .requiresNetworkLab, .timeLimit(.minutes(5)))
  struct DiskFullScenarioTests {
    static let tmpfsMiB = 24

    static var options: LabClusterOptions {
      var options = LabClusterOptions()
      for id: Int32 in 1...3 {
        options.brokerDataTmpfsMiB[id] = tmpfsMiB
      }
      return options
    }

    @Test func diskFullOnAFollower() async throws {
      try await NetworkScenario.run("disk-full-follower", partitions: 1, options: Self.options) {
        scenario in
        let before = try await scenario.partition(0)
        let broker = before.replicas.first { $0 != before.leader } ?? -1
        try await Self.fillAndFree(scenario, broker: broker, leading: false, before: before)
      }
    }

    @Test func diskFullOnALeader() async throws {
      try await NetworkScenario.run("disk-full-leader", partitions: 1, options: Self.options) {
        scenario in
        let before = try await scenario.partition(0)
        try await Self.fillAndFree(scenario, broker: before.leader, leading: true, before: before)
      }
    }

    private static func fillAndFree(
      _ scenario: NetworkScenario, broker: Int32, leading: Bool, before: LabPartitionState
    ) async throws {
      let cluster = scenario.cluster
      let server = LabServer.broker(broker)
      let directory = cluster.dataDirectory(of: server)
      let logStart = scenario.logLength(server)
      let filler = directory.appendingPathComponent("filler")
      let role = leading ? "leader" : "follower"
      let faultMs = scenario.mark(
        "fault injected: filling broker \(broker)'s data disk (\(Self.tmpfsMiB) MiB tmpfs; "
          + "\(role) of p0, epoch \(before.leaderEpoch), ISR \(before.isr))")
      let filled = try fillUntilFull(filler.path)
      scenario.mark("disk full: a \(filled)-byte file took all its space")

      let detectedMs = try await scenario.waitForLog(
        server, "data disk is full", afterCharacters: logStart, timeoutMs: 20_000)
      #expect(detectedMs != nil, "broker \(broker) never logged that its disk is full")
      if let detectedMs {
        scenario.mark(
          "fault detected: broker \(broker) logged \"data disk is full\"", atMs: detectedMs)
      }
      let (moved, _) = try await cluster.waitForPartition(
        scenario.topic, 0, timeoutMs: 20_000,
        leading
          ? "a new leader and broker \(broker) out of the ISR" : "broker \(broker) out of the ISR"
      ) { $0.leader >= 0 && $0.leader != broker && !$0.isr.contains(broker) }
      scenario.mark(
        "broker \(broker) out of the ISR: leader broker \(moved.leader) epoch "
          + "\(moved.leaderEpoch), ISR \(moved.isr)")
      if leading {
        #expect(moved.leaderEpoch > before.leaderEpoch)
      }
      // acks=all goes on with the other two while the disk stays full.
      try await Task.sleep(for: .milliseconds(ChaosSettings.pick(short: 2_000, long: 8_000)))
      let stderr = String(
        scenario.cluster.process(of: server)?.stderrText().dropFirst(logStart) ?? "")
      #expect(
        stderr.contains("No space left on device"),
        "no clear ENOSPC error in broker \(broker)'s log")
      #expect(cluster.isRunning(server), "broker \(broker) died of a full disk")

      // Both ways an operator frees space: delete files (the follower), or grow the volume
      // (the leader: the tmpfs remounted twice as large, the file left in place).
      let freeMs: Int64
      if leading {
        freeMs = scenario.mark("space freed: tmpfs remounted with \(Self.tmpfsMiB * 2) MiB")
        try NetworkLab.runTool([
          "mount", "-o", "remount,size=\(Self.tmpfsMiB * 2)m", directory.path,
        ])
      } else {
        freeMs = scenario.mark("space freed: removing the file")
        try FileManager.default.removeItem(at: filler)
      }
      let rejoinedMs = try await scenario.waitForLog(
        server, "data disk has space again", afterCharacters: logStart, timeoutMs: 20_000)
      #expect(rejoinedMs != nil, "broker \(broker) never noticed the space")
      if let rejoinedMs {
        scenario.mark("broker \(broker) logged \"data disk has space again\"", atMs: rejoinedMs)
      }
      _ = try await cluster.waitForPartition(
        scenario.topic, 0, timeoutMs: 30_000, "broker \(broker) back in the ISR",
        pollIntervalMs: 200
      ) { $0.leader >= 0 && $0.isr.count == 3 }
      let recoveredMs = scenario.mark("recovered: broker \(broker) back in the ISR")

      try await scenario.finish(windows: [
        ("disk full on the \(role) (broker \(broker))", 0, faultMs, freeMs),
        ("space freed on broker \(broker)", 0, freeMs, recoveredMs),
      ])
      // No corruption: every replica caught up to the same end, and the broker's logs open
      // without any repair after a clean restart.
      try await scenario.waitForAllCaughtUp(partitions: 1)
      _ = try await cluster.terminate(server)
      try await cluster.restart(server)
      // A new process: its stderr is this start's alone.
      let restarted = cluster.process(of: server)?.stderrText() ?? ""
      #expect(
        !restarted.contains("recovered partition log"),
        "broker \(broker)'s log needed repair after the disk-full period:\n\(restarted.suffix(2_000))"
      )
      scenario.mark("broker \(broker) restarted cleanly: its partition logs opened without repair")
    }

    /// Writes zeros to `path` until the file system refuses (ENOSPC); returns the bytes
    /// written. Large writes first, then small ones, so the last free pages are taken too.
    static func fillUntilFull(_ path: String) throws -> Int {
      let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
      guard descriptor >= 0 else {
        throw HarnessError("cannot create \(path): \(String(cString: strerror(errno)))")
      }
      defer { close(descriptor) }
      var total = 0
      for chunkBytes in [1 << 20, 4_096, 512] {
        let chunk = [UInt8](repeating: 0, count: chunkBytes)
        while true {
          let written = chunk.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
          if written > 0 {
            total += written
            continue
          }
          if written < 0 && errno == EINTR { continue }
          guard written < 0 && (errno == ENOSPC || errno == EDQUOT) else {
            throw HarnessError("writing \(path) failed: \(String(cString: strerror(errno)))")
          }
          break
        }
      }
      return total
    }
  }
}
