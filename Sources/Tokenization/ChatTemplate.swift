// ChatTemplate: renders a conversation into a prompt with a Jinja chat template (the subset in
// JinjaParser/JinjaRuntime), as transformers' apply_chat_template does. Built in: ChatML and
// Llama 2 (HF's template); Tokenizer.chatTemplate() picks the stored one or a fallback.

public struct ChatMessage: Sendable, Equatable {
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

public struct ChatTemplateError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable {
        /// The template text is not valid (or uses Jinja this interpreter lacks).
        case syntax
        /// Rendering failed inside the template (undefined value, type error, unsupported filter).
        case render
        /// The template called raise_exception: the conversation is not acceptable to it
        /// (e.g. roles that do not alternate).
        case raised
    }

    public let kind: Kind
    public let message: String

    public var description: String {
        switch kind {
        case .syntax: return "chat template syntax error: \(message)"
        case .render: return "chat template error: \(message)"
        case .raised: return message
        }
    }
}

public struct ChatTemplate: Sendable {
    public let source: String
    private let nodes: [JinjaNode]

    /// Parses a Jinja chat template.
    public init(_ source: String) throws {
        self.source = source
        do {
            nodes = try JinjaParser.parse(source)
        } catch let e as JinjaSyntaxError {
            throw ChatTemplateError(kind: .syntax, message: e.description)
        }
    }

    /// Renders `messages` (each a dict with "role" and "content"). `bosToken`/`eosToken` are
    /// the template's bos_token/eos_token; `variables` adds or overrides others.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool, bosToken: String? = nil,
                       eosToken: String? = nil, variables: [String: String] = [:]) throws -> String {
        var globals: [String: JinjaValue] = [
            "messages": .array(messages.map { .dict(JinjaDict([("role", .string($0.role)), ("content", .string($0.content))])) }),
            "add_generation_prompt": .bool(addGenerationPrompt),
            "bos_token": bosToken.map { .string($0) } ?? .none,
            "eos_token": eosToken.map { .string($0) } ?? .none,
            "tools": .none,
            "documents": .none,
        ]
        for (k, v) in variables { globals[k] = .string(v) }
        do {
            return try JinjaRenderer(globals: globals).render(nodes)
        } catch let e as JinjaRenderError {
            throw ChatTemplateError(kind: e.raised ? .raised : .render, message: e.message)
        }
    }

    /// ChatML (`<|im_start|>role\ncontent<|im_end|>\n`), as Qwen2 and SmolLM2 use.
    public static let chatML = try! ChatTemplate(
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
        + "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

    /// Llama 2 chat (`<s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST]`), HF's template.
    public static let llama2 = try! ChatTemplate(
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
        + "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
        + "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
        + "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        + "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
        + "{% if loop.index0 == 0 and system_message != false %}"
        + "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
        + "{% else %}{% set content = message['content'] %}{% endif %}"
        + "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
        + "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
}

/// A rendered prompt and, when the stored template could not be used, why.
public struct ChatPrompt: Sendable {
    public let text: String
    /// Non-nil when a built-in template replaced the stored one.
    public let note: String?
}

extension Tokenizer {
    /// The built-in template for this kind of tokenizer: Llama 2 for SentencePiece-style, ChatML otherwise.
    public var fallbackChatTemplate: ChatTemplate {
        kind == .sentencePieceBPE ? .llama2 : .chatML
    }

    private var fallbackName: String { kind == .sentencePieceBPE ? "Llama-2" : "ChatML" }

    /// The stored template when it parses; otherwise the fallback, with a note saying why.
    public func chatTemplate() -> (template: ChatTemplate, note: String?) {
        guard let source = chatTemplateSource else {
            return (fallbackChatTemplate, "\(path) has no chat template; using the built-in \(fallbackName) template")
        }
        do {
            return (try ChatTemplate(source), nil)
        } catch {
            return (fallbackChatTemplate, "\(path): stored chat template not usable (\(error)); using the built-in \(fallbackName) template")
        }
    }

    /// Renders a conversation with the stored template (or the fallback) and this tokenizer's
    /// BOS/EOS strings. A template that raises (e.g. roles out of order) throws
    /// ChatTemplateError(.raised); one that fails for lack of interpreter support falls back.
    public func applyChatTemplate(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) throws -> ChatPrompt {
        let (template, note) = chatTemplate()
        do {
            return ChatPrompt(text: try template.render(messages, addGenerationPrompt: addGenerationPrompt,
                                                        bosToken: bosToken, eosToken: eosToken), note: note)
        } catch let e as ChatTemplateError where e.kind == .render && note == nil {
            let text = try fallbackChatTemplate.render(messages, addGenerationPrompt: addGenerationPrompt,
                                                       bosToken: bosToken, eosToken: eosToken)
            return ChatPrompt(text: text, note: "\(path): stored chat template failed (\(e)); using the built-in \(fallbackName) template")
        }
    }
}
