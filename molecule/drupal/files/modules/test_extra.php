<?php
// A test module of the Drupal stand-in that the tests enable.

function test_extra_islandora_job_register_jobs() {
  return array(
    'test_extra_reverse' => array('type' => 'php', 'module' => 'test_extra'),
  );
}

function test_extra_reverse($text) {
  return strrev($text);
}
