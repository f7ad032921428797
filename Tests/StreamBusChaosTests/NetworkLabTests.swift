import Foundation
import StreamBusTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

extension NetworkChaosTests {
  /// The lab itself: namespaces, addresses, faults that really cut (and heal) a TCP path,
  /// cleanup, the sweeper, and processes started inside a node.
  @Suite(.serialized, .requiresNetworkLab, .timeLimit(.minutes(5)))
  struct NetworkLabTests {
    @Test func faultsCutAndHealATCPPathAndShutdownLeavesNothing() async throws {
      let lab = try NetworkLab(name: "lab-self-test")
      defer { lab.shutdown() }
      let server = try lab.addNode("server")
      let client = try lab.addNode("client")
      let bystander = try lab.addNode("bystander")
      for node in [server, client, bystander] {
        #expect(FileManager.default.fileExists(atPath: "/run/netns/\(node.namespace)"))
        #expect(node.namespace.hasPrefix(lab.prefix + "-"))
        #expect(node.address.hasPrefix(lab.subnet + "."))
      }
      #expect(FileManager.default.fileExists(atPath: "/run/netns/\(lab.hubNamespace)"))
      // The lab's addresses exist only inside the lab: nothing of it is in the host.
      let hostLinks = try runTool(["ip", "-o", "link", "show"])
      #expect(!hostLinks.contains(lab.prefix))

      let port = 7_777
      let listener = try await lab.inNamespace(of: server) { listenSocket(server.address, port) }
      try #require(listener >= 0, "cannot listen in the server namespace")
      defer { close(listener) }

      func reachable(from node: LabNode = client) async throws -> Bool {
        try await lab.canConnect(from: node, host: server.address, port: port, timeoutMs: 700)
      }
      #expect(try await reachable(), "no TCP path client -> server in a fresh lab")
      #expect(try await reachable(from: bystander))

      let partition = try lab.partition([server], from: [client])
      #expect(try await !reachable(), "partition did not cut client -> server")
      #expect(try await reachable(from: bystander), "partition cut an uninvolved node")
      try lab.heal(partition)
      #expect(try await reachable(), "heal did not restore client -> server")

      // One-way: the server drops what the client sends, so no handshake completes.
      try lab.oneWay(server, dropIncomingFrom: [client])
      #expect(try await !reachable())
      try lab.heal(node: server)
      #expect(try await reachable())

      // Resets fail fast (RST), unlike DROP.
      try lab.reset(server)
      let resetStarted = ContinuousClock.now
      #expect(try await !reachable())
      #expect(ContinuousClock.now - resetStarted < .milliseconds(500), "a reset should fail fast")
      try lab.healAll()
      #expect(try await reachable())

      try lab.loss(server, percent: 100)
      #expect(try await !reachable(), "100% loss let a handshake through")
      try lab.healAll()
      #expect(try await reachable())

      let slow = try lab.rateLimit(client, kbit: 512)
      #expect(lab.networkRules(of: client).contains("tbf"))
      #expect(try await reachable())
      try lab.heal(slow)
      #expect(!lab.networkRules(of: client).contains("tbf"))
      #expect(lab.activeFaults.isEmpty)

      let tmpfs = try lab.mountTmpfs(named: "disk", sizeMiB: 1)
      #expect(throws: (any Error).self) {
        try Data(count: 2 << 20).write(to: tmpfs.appendingPathComponent("too-big"))
      }

      lab.shutdown()
      let left = try FileManager.default.contentsOfDirectory(atPath: "/run/netns")
        .filter { $0.hasPrefix(lab.prefix) }
      #expect(left.isEmpty, "namespaces left after shutdown: \(left)")
      #expect(!FileManager.default.fileExists(atPath: lab.directory.path))
      let mounts = try String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)
      #expect(!mounts.contains(lab.prefix), "tmpfs still mounted after shutdown")
    }

    @Test func sweeperRemovesNamespacesOfDeadOwnersOnly() throws {
      // pid_max is at most 4194304: this owner cannot be running.
      let stale = "\(NetworkLab.namePrefix)99999999x5eed-node"
      let live = "\(NetworkLab.namePrefix)\(getppid())x5eed-node"
      #expect(NetworkLab.isStale(stale))
      #expect(!NetworkLab.isStale(live), "the owner (our parent) is running")
      #expect(!NetworkLab.isStale("\(NetworkLab.namePrefix)\(getpid())x1-hub"))
      #expect(!NetworkLab.isStale("unrelated-namespace"))

      try runTool(["ip", "netns", "add", stale])
      defer { _ = try? runTool(["ip", "netns", "del", stale]) }
      NetworkLab.sweepStaleLabs()
      #expect(!FileManager.default.fileExists(atPath: "/run/netns/\(stale)"))
    }

    /// Real processes inside the lab: a 3 + 3 cluster, sbctl in the client namespace creates a
    /// topic, produces and consumes; a broker cut off from the client is unreachable.
    @Test func clusterInTheLabServesSbctlFromTheClientNamespace() async throws {
      try await LabCluster.withCluster("lab-cluster") { cluster in
        try await cluster.createTopic("lab", partitions: 2)
        let input = cluster.lab.harness.rootDirectory.appendingPathComponent("input.txt")
        try (1...50).map { "line-\($0)" }.joined(separator: "\n").write(
          to: input, atomically: true, encoding: .utf8)
        let produced = try await cluster.lab.run(
          in: cluster.client, executableNamed: "sbctl",
          arguments: ["produce", "lab", "--partition", "1", "--brokers", cluster.bootstrapBrokers],
          stdin: input)
        try produced.checkSuccess()
        let consumed = try await cluster.sbctl([
          "consume", "lab", "--partition", "1", "--from", "beginning", "--count", "50",
          "--brokers", cluster.bootstrapBrokers,
        ])
        try consumed.checkSuccess()
        #expect(consumed.stdoutText.contains("line-1\n") && consumed.stdoutText.contains("line-50"))
        let description = try await cluster.describeTopic("lab")
        #expect(description.partitions.count == 2)
        #expect(description.partitions.allSatisfy { $0.isr.count == 3 })
        let partition1 = try #require(description.partitions.first { $0.partition == 1 })
        #expect(partition1.highWatermark == 50)

        let leader = cluster.brokerNode(partition1.leader)
        let cut = try cluster.lab.partition([leader], from: [cluster.client])
        #expect(
          try await !cluster.lab.canConnect(
            from: cluster.client, host: leader.address, port: LabCluster.brokerPort,
            timeoutMs: 500))
        try cluster.lab.heal(cut)
        #expect(
          try await cluster.lab.canConnect(
            from: cluster.client, host: leader.address, port: LabCluster.brokerPort))
        let leaders = await cluster.metaserverStatuses().filter(\.isLeader)
        #expect(leaders.count == 1, "metaserver leaders: \(leaders)")
      }
    }
  }
}

/// A listening TCP socket on `host:port` of the calling thread's namespace; -1 on failure.
private func listenSocket(_ host: String, _ port: Int) -> Int32 {
  let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  guard descriptor >= 0 else { return -1 }
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_port = in_port_t(UInt16(port).bigEndian)
  guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
    close(descriptor)
    return -1
  }
  let bound = withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
      bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
    }
  }
  guard bound == 0, listen(descriptor, 64) == 0 else {
    close(descriptor)
    return -1
  }
  return descriptor
}

/// Runs a system tool and returns its stdout; throws when it fails.
@discardableResult
private func runTool(_ arguments: [String]) throws -> String {
  try NetworkLab.runTool(arguments)
}
