import Logging
import StreamBusMetaProtocol
import StreamBusProtocol
import StreamBusTransport

/// Asks brokers for their ReplicaStatus, one connection per broker, all brokers at once.
enum ReplicaStatusClient {
  /// One broker's answer, or why there is none (the describe output then shows `-`).
  enum Answer: Sendable, Equatable {
    case answered(ReplicaStatusResponse)
    case unavailable(String)
  }

  /// The address sbctl connects to: the broker's "client" endpoint, else its first one.
  static func clientAddress(of broker: MetaBroker) -> String? {
    let endpoint = broker.endpoints.first { $0.name == "client" } ?? broker.endpoints.first
    return endpoint.map(endpointAddress)
  }

  /// Asks every broker in `addresses` (broker id → host:port) for `topics`; a broker that
  /// cannot be reached within `timeoutMs` is `.unavailable`.
  static func ask(
    _ addresses: [Int32: String], topics: [ReplicaStatusRequest.Topic], timeoutMs: Int64
  ) async -> [Int32: Answer] {
    await withTaskGroup(of: (Int32, Answer).self) { group in
      for (brokerID, address) in addresses {
        group.addTask {
          (brokerID, await ask(address: address, topics: topics, timeoutMs: timeoutMs))
        }
      }
      var answers: [Int32: Answer] = [:]
      for await (brokerID, answer) in group {
        answers[brokerID] = answer
      }
      return answers
    }
  }

  static func ask(address: String, topics: [ReplicaStatusRequest.Topic], timeoutMs: Int64) async
    -> Answer
  {
    let remote: HostPort
    do {
      remote = try HostPort(parsing: address)
    } catch {
      return .unavailable("invalid address \(address)")
    }
    var configuration = FrameConnectionConfiguration()
    configuration.connectTimeoutMs = timeoutMs
    configuration.requestTimeoutMs = timeoutMs
    var logger = Logger(label: "sbctl.replica-status")
    logger.logLevel = .critical
    let connection: FrameConnection
    do {
      connection = try await FrameConnection.connect(
        to: remote, configuration: configuration, logger: logger)
    } catch {
      return .unavailable("\(error)")
    }
    let answer = await exchange(connection, address: address, topics: topics)
    await connection.close()
    return answer
  }

  private static func exchange(
    _ connection: FrameConnection, address: String, topics: [ReplicaStatusRequest.Topic]
  ) async -> Answer {
    let request = Request.replicaStatus(ReplicaStatusRequest(topics: topics))
    let header = RequestHeader(
      apiKey: .replicaStatus, apiVersion: 0, correlationId: 1, clientId: "sbctl")
    do {
      let payload = try await connection.send(request.encodePayload(header: header))
      let (responseHeader, response) = try Response.decode(
        apiKey: .replicaStatus, version: 0, payload: payload)
      guard case .replicaStatus(let body) = response else {
        return .unavailable(
          "\(address) answered ReplicaStatus with \(responseHeader.errorCode.name)"
            + (responseHeader.errorMessage.map { ": \($0)" } ?? ""))
      }
      return .answered(body)
    } catch {
      return .unavailable("\(error)")
    }
  }
}
