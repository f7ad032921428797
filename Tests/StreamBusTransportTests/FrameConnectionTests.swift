import Foundation
import NIOCore
import Testing

@testable import StreamBusTransport

@Suite struct FrameConnectionTests {
  @Test func connectionRefusedIsAClearError() async throws {
    let server = try await startServer(echoHandler)
    let address = server.localAddress
    await server.shutdownGracefully()
    let error = await #expect(throws: TransportError.self) {
      _ = try await FrameConnection.connect(to: address, logger: quietLogger)
    }
    #expect(error?.code == .connectionFailed)
    #expect(error?.message.contains("cannot connect to \(address)") == true)
    #expect(
      error?.message
        == "cannot connect to \(address): \(address) Connection refused (errno \(ECONNREFUSED))")
  }

  @Test func serverClosingMidRequestFailsAllPendingRequests() async throws {
    let gate = Gate()
    let handler = ClosureHandler { frame, _ in
      .deferred {
        await gate.pass()
        return .close(reason: "going away")
      }
    }
    let server = try await startServer(handler)
    let connection = try await connect(server)
    let sends = (0..<3).map { id in
      Task { try await connection.send(makeRequest(correlationId: Int32(id))) }
    }
    await gate.waitUntilStarted(3)
    await gate.open()
    for send in sends {
      let error = await #expect(throws: TransportError.self) { try await send.value }
      #expect(error?.code == .connectionClosed)
      #expect(error?.message.contains("closed") == true)
    }
    #expect(!connection.isActive)
    let later = await #expect(throws: TransportError.self) {
      try await connection.send(makeRequest(correlationId: 4))
    }
    #expect(later?.code == .connectionClosed)
    await server.shutdownGracefully()
  }

  @Test func correlationIdMismatchFailsTheConnection() async throws {
    let handler = ClosureHandler { frame, _ in
      .respond(makeResponse(correlationId: ParsedRequest(frame).correlationId + 1, body: []))
    }
    let server = try await startServer(handler)
    let connection = try await connect(server)
    let error = await #expect(throws: TransportError.self) {
      try await connection.send(makeRequest(correlationId: 10))
    }
    #expect(error?.code == .protocolViolation)
    #expect(error?.message.contains("correlation id 11 where 10 was expected") == true)
    #expect(try await eventually { !connection.isActive })
    await server.shutdownGracefully()
  }

  @Test func requestTimeoutFailsOnlyThatRequest() async throws {
    let handler = ClosureHandler { frame, info in
      if ParsedRequest(frame).correlationId == 1 {
        try? await Task.sleep(for: .milliseconds(200))
      }
      return await echoHandler.handle(frame: frame, connection: info)
    }
    let server = try await startServer(handler)
    let connection = try await connect(server)
    let slow = Task { try await connection.send(makeRequest(correlationId: 1), timeoutMs: 30) }
    try await Task.sleep(for: .milliseconds(5))
    let fast = Task { try await connection.send(makeRequest(correlationId: 2, body: [2])) }
    let error = await #expect(throws: TransportError.self) { try await slow.value }
    #expect(error?.code == .requestTimedOut)
    #expect(try await fast.value == makeResponse(correlationId: 2, body: [2]))
    #expect(connection.isActive)
    await connection.close()
    await server.shutdownGracefully()
  }

  @Test func shortRequestIsRejectedBeforeSending() async throws {
    let server = try await startServer(echoHandler)
    let connection = try await connect(server)
    let error = await #expect(throws: TransportError.self) {
      try await connection.send([0, 1, 0, 1])
    }
    #expect(error?.code == .invalidRequest)
    #expect(
      try await connection.send(makeRequest(correlationId: 1))
        == makeResponse(correlationId: 1, body: []))
    await connection.close()
    await server.shutdownGracefully()
  }

  @Test func closeFailsLaterSends() async throws {
    let server = try await startServer(echoHandler)
    let connection = try await connect(server)
    await connection.close()
    let error = await #expect(throws: TransportError.self) {
      try await connection.send(makeRequest(correlationId: 1))
    }
    #expect(error?.code == .connectionClosed)
    await server.shutdownGracefully()
  }

  @Test func poolReusesAndReconnects() async throws {
    let handler = ClosureHandler { frame, info in
      if ParsedRequest(frame).apiKey == 9 {
        return .close(reason: "test")
      }
      return await echoHandler.handle(frame: frame, connection: info)
    }
    let server = try await startServer(handler)
    let pool = ConnectionPool(logger: quietLogger)
    let first = try await pool.connection(to: server.localAddress)
    let again = try await pool.connection(to: server.localAddress)
    #expect(first === again)
    _ = try? await pool.send(makeRequest(apiKey: 9, correlationId: 1), to: server.localAddress)
    try await Task.sleep(for: .milliseconds(20))
    let response = try await pool.send(makeRequest(correlationId: 2), to: server.localAddress)
    #expect(response == makeResponse(correlationId: 2, body: []))
    let replacement = try await pool.connection(to: server.localAddress)
    #expect(replacement !== first)
    await pool.closeAll()
    #expect(!replacement.isActive)
    await server.shutdownGracefully()
  }

  @Test func poolSharesOneConnectAmongConcurrentCallers() async throws {
    let server = try await startServer(echoHandler)
    let pool = ConnectionPool(logger: quietLogger)
    let connections = try await withThrowingTaskGroup(of: FrameConnection.self) { group in
      for _ in 0..<10 {
        group.addTask { try await pool.connection(to: server.localAddress) }
      }
      return try await group.reduce(into: []) { $0.append($1) }
    }
    #expect(connections.allSatisfy { $0 === connections[0] })
    // A round trip guarantees the server has registered the connection.
    _ = try await connections[0].send(makeRequest(correlationId: 1))
    #expect(server.connectionCount == 1)
    await pool.closeAll()
    await server.shutdownGracefully()
  }
}

@Suite struct ConnectTimeoutTests {
  @Test func unreachableAddressFailsWithinTheConnectTimeout() async throws {
    // 192.0.2.0/24 is reserved for documentation: packets go nowhere (or, without a route,
    // fail at once). Either way the error must come back quickly and say where it tried.
    var configuration = FrameConnectionConfiguration()
    configuration.connectTimeoutMs = 100
    let address = HostPort(host: "192.0.2.1", port: 9092)
    let started = ContinuousClock.now
    let error = await #expect(throws: TransportError.self) {
      _ = try await FrameConnection.connect(
        to: address, configuration: configuration, logger: quietLogger)
    }
    #expect(ContinuousClock.now - started < .seconds(3))
    #expect(error?.code == .connectionFailed)
    #expect(error?.message.hasPrefix("cannot connect to 192.0.2.1:9092") == true)
  }
}
