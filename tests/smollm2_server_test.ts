/**
 * The server on a real model: `deno task start --model <SmolLM2 GGUF> --draft none` answers a chat
 * request with the model's own template (ChatML), stops at its end-of-turn token (<|im_end|>, not
 * emitted), and names the model by its file in /v1/models. Greedy, so the answer is deterministic.
 */
import assert from "node:assert/strict";
import { spawnServe } from "./fixtures/server_process.ts";
import { haveSmollm2, SMOLLM2 } from "./fixtures/smollm2.ts";

Deno.test({
  name: "smollm2 server: a chat completion is a sensible English answer ending at <|im_end|>",
  ignore: !haveSmollm2,
  fn: async () => {
    const server = await spawnServe(["--model", SMOLLM2, "--draft", "none"]);
    try {
      const models = await (await fetch(`${server.url}/v1/models`)).json();
      assert.equal(models.data[0].id, "SmolLM2-135M-Instruct.Q4_1.gguf");
      const res = await fetch(`${server.url}/v1/chat/completions`, {
        method: "POST",
        body: JSON.stringify({
          model: "SmolLM2-135M-Instruct.Q4_1.gguf",
          messages: [{ role: "user", content: "What is the capital of France? Answer in one sentence." }],
          max_tokens: 48,
          temperature: 0,
        }),
      });
      const body = await res.json();
      assert.equal(res.status, 200, JSON.stringify(body));
      const choice = body.choices[0];
      assert.equal(choice.finish_reason, "stop", `ended at the end-of-turn token: ${JSON.stringify(choice)}`);
      assert.match(choice.message.content, /Paris/);
      assert.doesNotMatch(choice.message.content, /<\|im_(start|end)\|>/);
      assert.ok(body.usage.completion_tokens < 48);
    } finally {
      assert.equal(await server.stop(), 0, server.log());
    }
  },
});
