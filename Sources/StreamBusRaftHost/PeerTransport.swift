// TCP transport between the Raft nodes of one group. Outbound: one connection per peer,
// fed by a bounded queue and drained by one task that coalesces queued messages into
// frames. Inbound: a FrameServer whose handler checks the frame header and hands the
// messages to the driver. Nothing is answered at the frame level: Raft's own responses are
// ordinary messages going the other way.

import Logging
import NIOConcurrencyHelpers
import NIOCore
import StreamBusRaft
import StreamBusTransport

/// Logs at most one line per key and interval, so a peer that keeps sending bad frames or
/// a peer that stays unreachable does not flood the log.
final class LogLimiter: Sendable {
  private let lastLogged = NIOLockedValueBox([String: NIODeadline]())
  private let intervalMs: Int64

  init(intervalMs: Int64 = 5_000) {
    self.intervalMs = intervalMs
  }

  func shouldLog(_ key: String) -> Bool {
    let now = NIODeadline.now()
    return lastLogged.withLockedValue { logged in
      if let last = logged[key], now < last + .milliseconds(intervalMs) { return false }
      logged[key] = now
      return true
    }
  }
}

struct PeerTransportSettings: Sendable {
  var clusterID: String
  var localID: NodeID
  var queueMessagesMax: Int
  var queueBytesMax: Int
  var frameBytesMax: Int
  var connectTimeoutMs: Int64
  var backoffMinMs: Int64
  var backoffMaxMs: Int64

  init(_ configuration: RaftHostConfiguration) {
    clusterID = configuration.clusterID
    localID = configuration.nodeID
    queueMessagesMax = configuration.peerQueueMessagesMax
    queueBytesMax = configuration.peerQueueBytesMax
    frameBytesMax = configuration.peerFrameBytesMax
    connectTimeoutMs = configuration.peerConnectTimeoutMs
    backoffMinMs = configuration.reconnectBackoffMinMs
    backoffMaxMs = configuration.reconnectBackoffMaxMs
  }
}

/// Outbound side: one `PeerLink` per peer, created on first use.
final class PeerTransport: Sendable {
  let settings: PeerTransportSettings
  let faults: PeerFaults
  private let logger: Logger
  private let limiter = LogLimiter()
  private let state: NIOLockedValueBox<State>

  private struct State {
    var links: [NodeID: PeerLink] = [:]
    var selfAddresses: PeerAddresses
    var closed = false
  }

  init(
    settings: PeerTransportSettings, selfAddresses: PeerAddresses, faults: PeerFaults,
    logger: Logger
  ) {
    self.settings = settings
    self.faults = faults
    self.logger = logger
    state = NIOLockedValueBox(State(selfAddresses: selfAddresses))
  }

  /// Queues messages for `peer`, to be sent to `address`. Never blocks: when the queue is
  /// full the messages are dropped and Raft retransmits.
  func send(_ messages: [Message], to peer: NodeID, address: HostPort) {
    if faults.dropsOutbound(to: peer) { return }
    let link: PeerLink? = state.withLockedValue { state in
      if state.closed { return nil }
      if let link = state.links[peer] { return link }
      let link = PeerLink(
        peer: peer, settings: settings, selfAddresses: state.selfAddresses, logger: logger,
        limiter: limiter)
      state.links[peer] = link
      return link
    }
    guard let link else { return }
    let dropped = link.enqueue(messages, address: address)
    if dropped > 0, limiter.shouldLog("queue-full-\(peer)") {
      logger.warning(
        "peer queue full, dropping messages",
        metadata: ["peer": "\(peer)", "dropped": "\(dropped)"])
    }
  }

  /// Closes the link to a member that left the group.
  func forget(_ peer: NodeID) {
    let link = state.withLockedValue { $0.links.removeValue(forKey: peer) }
    link?.close()
  }

  /// Closes every link; later sends are ignored.
  func close() async {
    let links = state.withLockedValue { state in
      state.closed = true
      let links = Array(state.links.values)
      state.links = [:]
      return links
    }
    for link in links { link.close() }
    for link in links { await link.finished() }
  }
}

/// The outbound half of the connection to one peer.
final class PeerLink: Sendable {
  let peer: NodeID
  private let settings: PeerTransportSettings
  private let selfAddresses: PeerAddresses
  private let queue = NIOLockedValueBox(Queue())
  private let wakeup: AsyncStream<Void>.Continuation
  private let task: NIOLockedValueBox<Task<Void, Never>?> = NIOLockedValueBox(nil)

  fileprivate struct Queue {
    var messages: [Message] = []
    var bytes = 0
    var address: HostPort?
    var closed = false
  }

  /// Budget of one message in the queue and in a frame: its payload plus the fixed fields.
  static func estimatedBytes(_ message: Message) -> Int {
    Int(clamping: message.payloadByteCount) + 128 + message.context.count
  }

  init(
    peer: NodeID, settings: PeerTransportSettings, selfAddresses: PeerAddresses, logger: Logger,
    limiter: LogLimiter
  ) {
    self.peer = peer
    self.settings = settings
    self.selfAddresses = selfAddresses
    let (stream, continuation) = AsyncStream.makeStream(
      of: Void.self, bufferingPolicy: .bufferingNewest(1))
    wakeup = continuation
    var linkLogger = logger
    linkLogger[metadataKey: "peer"] = "\(peer)"
    let sender = PeerSender(
      peer: peer, settings: settings, selfAddresses: selfAddresses, logger: linkLogger,
      limiter: limiter)
    let queue = self.queue
    task.withLockedValue {
      $0 = Task {
        await sender.run(wakeups: stream, queue: queue)
      }
    }
  }

  /// Returns how many messages did not fit.
  func enqueue(_ messages: [Message], address: HostPort) -> Int {
    let dropped = queue.withLockedValue { queue -> Int in
      if queue.closed { return 0 }
      queue.address = address
      var dropped = 0
      for message in messages {
        let bytes = Self.estimatedBytes(message)
        if queue.messages.count >= settings.queueMessagesMax
          || (queue.bytes + bytes > settings.queueBytesMax && !queue.messages.isEmpty)
        {
          dropped += 1
          continue
        }
        queue.messages.append(message)
        queue.bytes += bytes
      }
      return dropped
    }
    wakeup.yield()
    return dropped
  }

  func close() {
    queue.withLockedValue {
      $0.closed = true
      $0.messages = []
      $0.bytes = 0
    }
    wakeup.finish()
    // Ends a backoff sleep at once instead of letting shutdown wait it out.
    task.withLockedValue { $0?.cancel() }
  }

  func finished() async {
    if let task = task.withLockedValue({ $0 }) { await task.value }
  }

  fileprivate struct Batch {
    var messages: [Message]
    var address: HostPort?
    var closed: Bool
  }

  fileprivate static func takeBatch(
    _ queue: NIOLockedValueBox<Queue>, frameBytesMax: Int
  ) -> Batch {
    queue.withLockedValue { queue in
      if queue.closed { return Batch(messages: [], address: nil, closed: true) }
      var taken = 0
      var bytes = 0
      for message in queue.messages {
        let size = estimatedBytes(message)
        if taken > 0 && bytes + size > frameBytesMax { break }
        taken += 1
        bytes += size
      }
      let messages = Array(queue.messages.prefix(taken))
      queue.messages.removeFirst(taken)
      queue.bytes -= bytes
      return Batch(messages: messages, address: queue.address, closed: false)
    }
  }

  fileprivate static func dropAll(_ queue: NIOLockedValueBox<Queue>) {
    queue.withLockedValue {
      $0.messages = []
      $0.bytes = 0
    }
  }

  /// The task that owns the connection: connects on demand, reconnects with exponential
  /// backoff, and writes one frame per batch of queued messages.
  private struct PeerSender: Sendable {
    let peer: NodeID
    let settings: PeerTransportSettings
    let selfAddresses: PeerAddresses
    let logger: Logger
    let limiter: LogLimiter

    func run(wakeups: AsyncStream<Void>, queue: NIOLockedValueBox<Queue>) async {
      var connection: FrameConnection?
      var connectedAddress: HostPort?
      var backoffMs = settings.backoffMinMs
      var frameCounter: Int32 = 0
      for await _ in wakeups {
        while true {
          let batch = PeerLink.takeBatch(queue, frameBytesMax: settings.frameBytesMax)
          if batch.closed {
            if let connection { await connection.close() }
            connection = nil
            return
          }
          guard !batch.messages.isEmpty, let address = batch.address else { break }
          if connection == nil || connection?.isActive != true || connectedAddress != address {
            if let stale = connection { await stale.close() }
            connection = nil
            do {
              var configuration = FrameConnectionConfiguration()
              configuration.connectTimeoutMs = settings.connectTimeoutMs
              connection = try await FrameConnection.connect(
                to: address, configuration: configuration, logger: logger)
              connectedAddress = address
              backoffMs = settings.backoffMinMs
              logger.debug("connected to peer", metadata: ["address": "\(address)"])
            } catch {
              if limiter.shouldLog("connect-\(peer)") {
                logger.info(
                  "cannot reach peer, retrying with backoff",
                  metadata: ["address": "\(address)", "error": "\(error)"])
              }
              // What waited for this connection is stale by the time it exists; Raft
              // resends whatever still matters.
              PeerLink.dropAll(queue)
              try? await Task.sleep(for: .milliseconds(backoffMs))
              backoffMs = min(backoffMs * 2, settings.backoffMaxMs)
              continue
            }
          }
          guard let open = connection else { continue }
          frameCounter &+= 1
          let frame = PeerFrame(
            clusterID: settings.clusterID, from: settings.localID, to: peer,
            senderAddresses: selfAddresses, messages: batch.messages
          ).encoded(correlationID: frameCounter)
          do {
            try await open.sendOneWay(frame)
          } catch {
            if limiter.shouldLog("send-\(peer)") {
              logger.info("lost connection to peer", metadata: ["error": "\(error)"])
            }
            await open.close()
            connection = nil
          }
        }
      }
      if let connection { await connection.close() }
    }
  }
}

/// Inbound side: checks each frame's header and hands its messages to `deliver`.
struct PeerFrameHandler: FrameRequestHandler {
  let settings: PeerTransportSettings
  let faults: PeerFaults
  let logger: Logger
  let limiter: LogLimiter
  let deliver: @Sendable (_ from: NodeID, _ sender: PeerAddresses, _ messages: [Message]) -> Void

  func handle(frame: [UInt8], connection: ConnectionInfo) async -> FrameReply {
    let decoded: PeerFrame
    do {
      decoded = try PeerFrame(decoding: frame)
    } catch {
      return .close(reason: "malformed Raft peer frame: \(error)")
    }
    guard decoded.clusterID == settings.clusterID else {
      if limiter.shouldLog("cluster-\(connection.remoteAddress)") {
        logger.warning(
          "dropping peer frame of another cluster",
          metadata: [
            "cluster": "\(decoded.clusterID)", "from": "\(decoded.from)",
            "remote": "\(connection.remoteAddress)",
          ])
      }
      return .noResponse
    }
    guard decoded.to == settings.localID, decoded.from != 0, decoded.from != settings.localID
    else {
      if limiter.shouldLog("node-\(decoded.from)-\(decoded.to)") {
        logger.warning(
          "dropping peer frame addressed to another node",
          metadata: [
            "from": "\(decoded.from)", "to": "\(decoded.to)",
            "remote": "\(connection.remoteAddress)",
          ])
      }
      return .noResponse
    }
    if faults.dropsInbound(from: decoded.from) { return .noResponse }
    guard decoded.messages.allSatisfy({ $0.from == decoded.from && $0.to == decoded.to }) else {
      if limiter.shouldLog("mismatch-\(decoded.from)") {
        logger.warning(
          "dropping peer frame whose messages name other nodes than its header",
          metadata: ["from": "\(decoded.from)"])
      }
      return .noResponse
    }
    if !decoded.messages.isEmpty {
      deliver(decoded.from, decoded.senderAddresses, decoded.messages)
    }
    return .noResponse
  }
}
