// The runtime configuration (seed 002's 配置管理API) against a running gateway. Needs
// MODELFLEET_URL. Only knobs that cannot disturb the other test files are changed, and
// they are put back.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { LLMInferenceClient, ModelfleetError } from '../src/index.js';

const baseURL = process.env.MODELFLEET_URL;
if (!baseURL) {
  throw new Error('MODELFLEET_URL is not set: these tests need a running modelfleet gateway '
    + '(pytest tests/e2e/test_js_sdk.py starts one and sets it)');
}
const client = new LLMInferenceClient({ baseURL, timeoutMs: 60_000 });

test('config reads, updates in part and refuses a bad field', async () => {
  const before = await client.getConfig();
  assert.deepEqual(Object.keys(before).sort(), ['alert_thresholds', 'default_model_timeout',
    'gpu_monitor_interval', 'health_check_interval', 'log_level', 'max_concurrent_models']);
  assert.equal(typeof before.alert_thresholds.gpu_utilization_high, 'number');

  try {
    const after = await client.updateConfig({
      gpuMonitorInterval: before.gpu_monitor_interval + 1,
      alertThresholds: { gpu_utilization_high: 85 },
    });
    assert.equal(after.gpu_monitor_interval, before.gpu_monitor_interval + 1);
    assert.deepEqual(after.alert_thresholds,
      { ...before.alert_thresholds, gpu_utilization_high: 85 }); // merged key by key
    assert.equal(after.max_concurrent_models, before.max_concurrent_models);
    assert.deepEqual(await client.getConfig(), after);

    const error = await client.updateConfig({ gpuMonitorInterval: 'often' }).catch((e) => e);
    assert.ok(error instanceof ModelfleetError);
    assert.deepEqual([error.status, error.param], [422, 'gpu_monitor_interval']);
    assert.deepEqual(await client.getConfig(), after); // nothing changed
  } finally {
    await client.updateConfig({ gpuMonitorInterval: before.gpu_monitor_interval,
      alertThresholds: before.alert_thresholds });
  }
  assert.deepEqual(await client.getConfig(), before);
});
