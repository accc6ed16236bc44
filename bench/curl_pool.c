/*
 * curl_pool.c
 *	  The wxpay worker's libcurl pattern alone: rounds of PER requests on one
 *	  multi handle, at most CONC attached at once, each easy handle detached
 *	  when its transfer ends and kept in a pool (as worker.c's run_requests
 *	  and collect_finished do).  Prints how many new connections libcurl
 *	  opened over all rounds, so the effect of the connection cache's size
 *	  (CURLMOPT_MAXCONNECTS, given or left at its default) can be told apart
 *	  from anything the simulator or the extension does.
 *
 *	  gcc -O2 -o curl_pool bench/curl_pool.c -lcurl
 *	  curl_pool URL CAFILE CONC ROUNDS PER [MAXCONNECTS]
 */
#include <stdio.h>
#include <stdlib.h>

#include <curl/curl.h>

static size_t
discard(char *data, size_t size, size_t nmemb, void *arg)
{
	(void) data;
	(void) arg;
	return size * nmemb;
}

int
main(int argc, char **argv)
{
	const char *url;
	const char *ca;
	int			conc,
				rounds,
				per,
				nfree = 0;
	long		maxconnects,
				opened = 0;
	CURLM	   *multi;
	CURL	  **pool;

	if (argc < 6)
	{
		fprintf(stderr, "usage: curl_pool URL CAFILE CONC ROUNDS PER [MAXCONNECTS]\n");
		return 2;
	}
	url = argv[1];
	ca = argv[2];
	conc = atoi(argv[3]);
	rounds = atoi(argv[4]);
	per = atoi(argv[5]);
	maxconnects = argc > 6 ? atol(argv[6]) : 0;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	multi = curl_multi_init();
	if (multi == NULL || (pool = calloc(conc, sizeof(CURL *))) == NULL)
		return 1;
	if (maxconnects > 0)
		curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, maxconnects);

	for (int r = 0; r < rounds; r++)
	{
		int			next = 0,
					active = 0,
					running;

		while (next < per || active > 0)
		{
			CURLMsg    *msg;
			int			queued;

			while (active < conc && next < per)
			{
				CURL	   *easy = nfree > 0 ? pool[--nfree] : curl_easy_init();

				if (easy == NULL)
					return 1;
				curl_easy_reset(easy);
				curl_easy_setopt(easy, CURLOPT_URL, url);
				curl_easy_setopt(easy, CURLOPT_CAINFO, ca);
				curl_easy_setopt(easy, CURLOPT_POSTFIELDS, "<xml></xml>");
				curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
				curl_multi_add_handle(multi, easy);
				active++;
				next++;
			}
			curl_multi_perform(multi, &running);
			while ((msg = curl_multi_info_read(multi, &queued)) != NULL)
			{
				long		connects = 0;

				if (msg->msg != CURLMSG_DONE)
					continue;
				curl_easy_getinfo(msg->easy_handle, CURLINFO_NUM_CONNECTS, &connects);
				opened += connects;
				curl_multi_remove_handle(multi, msg->easy_handle);
				pool[nfree++] = msg->easy_handle;
				active--;
			}
			if (active > 0)
				curl_multi_poll(multi, NULL, 0, 100, NULL);
		}
	}
	printf("%ld\n", opened);
	return 0;
}
