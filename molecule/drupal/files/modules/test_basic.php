<?php
// A test module of the Drupal stand-in, enabled from the start.

function test_basic_islandora_job_register_jobs() {
  return array(
    'test_basic_hello' => array('type' => 'php', 'module' => 'test_basic'),
    'test_basic_touch' => array('type' => 'php', 'module' => 'test_basic'),
    'test_basic_fail' => array('type' => 'php', 'module' => 'test_basic'),
    'test_basic_slow' => array('type' => 'php', 'module' => 'test_basic'),
  );
}

function test_basic_hello($name) {
  return "Hello $name";
}

function test_basic_touch($name) {
  @mkdir('/var/lib/drupal-standin/touched');
  file_put_contents('/var/lib/drupal-standin/touched/' . basename($name), $name);
  return $name;
}

function test_basic_fail($why) {
  throw new Exception("failing on purpose: $why");
}

function test_basic_slow($seconds, $name) {
  @mkdir('/var/lib/drupal-standin/started');
  touch('/var/lib/drupal-standin/started/' . basename($name));
  sleep((int) $seconds);
  return test_basic_touch($name);
}
