<?php
// A site of the Drupal stand-in: only its directory name matters (its --uri).
