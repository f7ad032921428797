import Logging
import NIOConcurrencyHelpers
import StreamBusRaft
import StreamBusTransport
import Testing

@testable import StreamBusRaftHost

@Suite struct PeerFrameHandlerTests {
  private let sender = PeerAddresses(raftAddress: HostPort(host: "127.0.0.1", port: 7002))
  private let connection = ConnectionInfo(
    connectionId: 1, remoteAddress: "127.0.0.1:5555", localAddress: "127.0.0.1:7001")

  private func makeHandler(
    _ delivered: NIOLockedValueBox<[(NodeID, [Message])]>, faults: PeerFaults = PeerFaults()
  ) -> PeerFrameHandler {
    var configuration = RaftHostConfiguration(
      nodeID: 1, clusterID: "blue", databasePath: "/unused",
      raftListen: HostPort(host: "127.0.0.1", port: 0))
    configuration.initialCluster = [1: sender]
    return PeerFrameHandler(
      settings: PeerTransportSettings(configuration), faults: faults,
      logger: Logger(label: "test"), limiter: LogLimiter(),
      deliver: { from, _, messages in delivered.withLockedValue { $0.append((from, messages)) } })
  }

  private func frame(
    cluster: String = "blue", from: NodeID = 2, to: NodeID = 1, messages: [Message]? = nil
  )
    -> [UInt8]
  {
    PeerFrame(
      clusterID: cluster, from: from, to: to, senderAddresses: sender,
      messages: messages ?? [Message(kind: .heartbeat, from: from, to: to, term: 1)]
    ).encoded(correlationID: 1)
  }

  @Test func deliversWellAddressedFrames() async {
    let delivered = NIOLockedValueBox<[(NodeID, [Message])]>([])
    let handler = makeHandler(delivered)
    guard case .noResponse = await handler.handle(frame: frame(), connection: connection) else {
      Issue.record("peer frames get no reply")
      return
    }
    #expect(delivered.withLockedValue { $0.map(\.0) } == [2])
  }

  @Test func dropsFramesOfAnotherClusterOrNode() async {
    let delivered = NIOLockedValueBox<[(NodeID, [Message])]>([])
    let handler = makeHandler(delivered)
    _ = await handler.handle(frame: frame(cluster: "green"), connection: connection)
    _ = await handler.handle(frame: frame(to: 3), connection: connection)
    _ = await handler.handle(frame: frame(from: 1), connection: connection)
    // Header says 2 → 1 but the message claims to come from 3.
    _ = await handler.handle(
      frame: frame(messages: [Message(kind: .heartbeat, from: 3, to: 1, term: 1)]),
      connection: connection)
    #expect(delivered.withLockedValue { $0.isEmpty })
  }

  @Test func closesConnectionsSendingGarbage() async {
    let delivered = NIOLockedValueBox<[(NodeID, [Message])]>([])
    let handler = makeHandler(delivered)
    var truncated = frame()
    truncated.removeLast()
    for bad in [[UInt8](), [0, 1, 2, 3, 4, 5, 6, 7, 8], truncated] {
      guard case .close = await handler.handle(frame: bad, connection: connection) else {
        Issue.record("malformed frame \(bad.count) bytes not refused")
        continue
      }
    }
    #expect(delivered.withLockedValue { $0.isEmpty })
  }

  @Test func inboundFaultDropsOnlyTheChosenPeer() async {
    let delivered = NIOLockedValueBox<[(NodeID, [Message])]>([])
    let faults = PeerFaults()
    faults.setDropInbound(from: 2)
    let handler = makeHandler(delivered, faults: faults)
    _ = await handler.handle(frame: frame(from: 2), connection: connection)
    _ = await handler.handle(frame: frame(from: 3), connection: connection)
    #expect(delivered.withLockedValue { $0.map(\.0) } == [3])
    faults.heal()
    _ = await handler.handle(frame: frame(from: 2), connection: connection)
    #expect(delivered.withLockedValue { $0.map(\.0) } == [3, 2])
  }
}

@Suite struct PeerTransportTests {
  /// Messages queued for an unreachable peer are bounded, and arrive once it listens.
  @Test func reconnectsAndDelivers() async throws {
    let received = NIOLockedValueBox<[Message]>([])
    let port = try await freePorts(1)[0]
    var configuration = RaftHostConfiguration(
      nodeID: 1, clusterID: "blue", databasePath: "/unused",
      raftListen: HostPort(host: "127.0.0.1", port: 0))
    configuration.peerQueueMessagesMax = 8
    configuration.initialCluster = [
      1: PeerAddresses(raftAddress: HostPort(host: "127.0.0.1", port: 1))
    ]
    let transport = PeerTransport(
      settings: PeerTransportSettings(configuration),
      selfAddresses: PeerAddresses(raftAddress: HostPort(host: "127.0.0.1", port: 1)),
      faults: PeerFaults(), logger: testLogger("transport"))
    let target = HostPort(host: "127.0.0.1", port: port)
    for term in 1...20 {
      transport.send(
        [Message(kind: .heartbeat, from: 1, to: 2, term: Term(term))], to: 2, address: target)
    }

    var receiverConfiguration = configuration
    receiverConfiguration.nodeID = 2
    let server = try await FrameServer.bind(
      configuration: FrameServerConfiguration(listen: target),
      handler: PeerFrameHandler(
        settings: PeerTransportSettings(receiverConfiguration), faults: PeerFaults(),
        logger: testLogger("receiver"), limiter: LogLimiter(),
        deliver: { _, _, messages in received.withLockedValue { $0.append(contentsOf: messages) } }),
      logger: testLogger("receiver"))
    try await eventually("a message after the peer came up") {
      transport.send([Message(kind: .heartbeat, from: 1, to: 2, term: 99)], to: 2, address: target)
      return received.withLockedValue { $0.contains { $0.term == 99 } }
    }
    // Of the 20 sent before the peer listened, at most a queue's worth (8) waited plus one
    // batch the sender had already taken (at most a queue's worth as well): the rest was
    // dropped rather than buffered.
    #expect(received.withLockedValue { $0.filter { $0.term < 99 }.count } <= 16)
    await transport.close()
    await server.shutdownGracefully()
  }
}
