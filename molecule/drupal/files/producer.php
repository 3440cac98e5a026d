<?php
/**
 * A Drupal site's side of Islandora Job, for the tests: islandora_job_submit,
 * islandora_job_submit_background and islandora_job_submit_batch with the payload of
 * islandora_job_format_payload. Prints what happened as JSON.
 *
 *   php producer.php HOST PORT basic MARKER
 *   php producer.php HOST PORT slow SECONDS MARKER COUNT
 *   php producer.php HOST PORT call FUNCTION ARG
 */

function islandora_job_format_payload($job_name, $args) {
  array_shift($args);
  return json_encode(array(
    'func' => $job_name,
    'args' => $args,
    'site' => 'http://example.org',
    'uid' => 1,
  ));
}

function client() {
  global $argv;
  $client = new GearmanClient();
  $client->addServer($argv[1], (int) $argv[2]);
  $client->setTimeout(60000);
  return $client;
}

$sent = array();

function submit($job_name) {
  global $sent;
  $payload = islandora_job_format_payload($job_name, func_get_args());
  $sent[] = base64_encode($payload);
  $client = client();
  $result = $client->doNormal($job_name, $payload);
  return array('result' => $result, 'ok' => $client->returnCode() == GEARMAN_SUCCESS);
}

function submit_background($job_name) {
  global $sent;
  $payload = islandora_job_format_payload($job_name, func_get_args());
  $sent[] = base64_encode($payload);
  $client = client();
  $handle = $client->doBackground($job_name, $payload);
  return $client->returnCode() == GEARMAN_SUCCESS ? $handle : FALSE;
}

function submit_batch(array $tasks, $callback) {
  $client = client();
  $client->setCompleteCallback($callback);
  foreach ($tasks as $task) {
    $args = $task['args'];
    array_unshift($args, '');
    $client->addTask($task['job_name'], islandora_job_format_payload($task['job_name'], $args));
  }
  return $client->runTasks();
}

$out = array();
switch ($argv[3]) {
  case 'basic':
    $marker = $argv[4];
    $out['hello'] = submit('test_basic_hello', "D\u{00e4}nny \u{2603} a/b");
    $out['fail'] = submit('test_basic_fail', 'on purpose');
    $out['background'] = submit_background('test_basic_touch', $marker);
    $completed = array();
    $tasks = array();
    for ($i = 0; $i < 5; $i++) {
      $tasks[] = array('job_name' => 'test_basic_hello', 'args' => array("$marker-$i"));
    }
    $tasks[] = array('job_name' => 'test_basic_fail', 'args' => array('in a batch'));
    $out['batch'] = submit_batch($tasks, function ($task) use (&$completed) {
      $completed[] = $task->data();
    });
    sort($completed);
    $out['completed'] = $completed;
    break;

  case 'slow':
    $out['slow'] = submit_background('test_basic_slow', $argv[4], $argv[5]);
    $out['handles'] = array();
    for ($i = 0; $i < (int) $argv[6]; $i++) {
      $out['handles'][] = submit_background('test_basic_touch', $argv[5] . "-$i");
    }
    break;

  case 'call':
    $out['call'] = submit($argv[4], $argv[5]);
    break;
}
$out['sent'] = $sent;
echo json_encode($out);
